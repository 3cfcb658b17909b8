//! The HTTP routes (axum): request checks shared by the write routes, the
//! handlers, and the middleware that counts every answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::BytesMut;
use futures_util::StreamExt;
use heavyread_sync::record::{etag_hex, valid_id, MAX_ID_LEN};
use heavyread_sync::RecordRef;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use tracing::{debug, error};

use crate::backend::{Backend, Readiness};
use crate::error::ApiError;
use crate::metrics::{Metrics, Route};
use crate::post::{Limits, Post};
use crate::Config;

/// Before answering 413, read and drop at most this much more of the body,
/// for at most [`DRAIN_FOR`], so the client sees the answer rather than a
/// connection reset by unread bytes.
const DRAIN_BYTES: usize = 8 << 20;
/// Bytes per second of a `/create` body, beyond `--body-timeout`, that
/// earn it more time (see [`read_body`]).
pub(crate) const BODY_MIN_RATE: usize = 64 << 10;
const DRAIN_FOR: Duration = Duration::from_secs(1);

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] points to; its fields are for the handlers only.
#[derive(Debug)]
pub struct Shared {
    pub(crate) backend: Backend,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    pub(crate) max_body_bytes: usize,
    pub(crate) bulk_max_bytes: u64,
    pub(crate) bulk_chunk: usize,
    /// Longest wait for the next chunk of a request body (`--body-timeout`).
    pub(crate) body_timeout: Duration,
    token: Option<Box<[u8]>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state for `config` (already validated), writing through `backend`.
    pub fn new(config: &Config, backend: Backend, metrics: Arc<Metrics>) -> Self {
        AppState(Arc::new(Shared {
            backend,
            metrics,
            limits: Limits {
                max_content_bytes: config.max_content_bytes,
                max_title_chars: config.max_title_chars,
                max_author_chars: config.max_author_chars,
            },
            max_body_bytes: config.max_body_bytes,
            bulk_max_bytes: config.bulk_max_bytes,
            bulk_chunk: config.bulk_chunk,
            body_timeout: config.body_timeout,
            token: config
                .write_token
                .as_ref()
                .map(|t| t.as_bytes().to_vec().into_boxed_slice()),
        }))
    }
}

impl Shared {
    /// 401 unless the request carries `Authorization: Bearer <token>` (when a
    /// token is configured). The comparison takes the same time wherever the
    /// first differing byte is; only the token's length can be learned.
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        match given {
            Some(t) if bool::from(t.ct_eq(expected)) => Ok(()),
            _ => Err(ApiError::Unauthorized),
        }
    }
}

fn bearer(v: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = v.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// 415 unless the Content-Type's media type (parameters ignored) is one of `accepted`.
pub(crate) fn require_media(
    headers: &HeaderMap,
    accepted: &[&str],
    expected: &'static str,
) -> Result<(), ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match media {
        Some(m) if accepted.iter().any(|a| a.eq_ignore_ascii_case(m)) => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType { expected }),
    }
}

/// The declared Content-Length, if any and readable.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The next chunk of a request body, `None` at its end; 408 when nothing
/// arrives for `stall` (a client that stops sending is not waited for forever).
pub(crate) async fn next_chunk(
    stream: &mut BodyDataStream,
    stall: Duration,
) -> Result<Option<Bytes>, ApiError> {
    match tokio::time::timeout(stall, stream.next()).await {
        Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
        Ok(Some(Err(e))) => Err(unreadable(e)),
        Ok(None) => Ok(None),
        Err(_) => Err(ApiError::BodyTimeout { after: stall }),
    }
}

/// Reads a whole body of at most `limit` bytes; 413 as soon as it is known to
/// be larger (from Content-Length, before reading anything), 408 when the
/// body is not complete `within` this long, plus one second for every
/// [`BODY_MIN_RATE`] bytes received: a client that trickles a byte now and
/// then, never silent for long, would otherwise hold its connection and
/// handler for as long as it likes, while a large body on a slow link still
/// gets the time it needs.
pub(crate) async fn read_body(
    body: Body,
    version: Version,
    headers: &HeaderMap,
    limit: usize,
    within: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = ApiError::TooLarge {
        limit: limit as u64,
    };
    if content_length(headers).is_some_and(|n| n > limit as u64) {
        let _ = refuse_body(body, version, headers).await;
        return Err(too_large);
    }
    let start = tokio::time::Instant::now();
    let mut deadline = start + within;
    let mut stream = body.into_data_stream();
    // Most bodies arrive in one chunk: keep it without copying.
    let mut single: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => return Err(unreadable(e)),
            Ok(None) => break,
            Err(_) => return Err(ApiError::BodyLate { within }),
        };
        let have = single.as_ref().map_or(0, Bytes::len) + buf.len();
        if have + chunk.len() > limit {
            let _ = drain(stream).await;
            return Err(too_large);
        }
        deadline = start
            + within
            + Duration::from_secs_f64((have + chunk.len()) as f64 / BODY_MIN_RATE as f64);
        match single.take() {
            None if buf.is_empty() => single = Some(chunk),
            first => {
                if let Some(first) = first {
                    buf.extend_from_slice(&first);
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(single.unwrap_or_else(|| buf.freeze()))
}

pub(crate) fn unreadable(e: axum::Error) -> ApiError {
    ApiError::BadRequest(format!("cannot read the request body: {e}"))
}

/// Drops a body refused from its head alone. An HTTP/1.1 client that
/// asked `Expect: 100-continue` sends nothing until told to, so its body is
/// not read (reading it is what makes hyper send the `100 Continue`); the
/// connection is closed after the answer instead. Any other client is
/// already sending (HTTP/1.0 has no interim answers, so its `Expect` waits
/// for nothing): a bounded part is read first (see [`drain`]). True when
/// the whole body was read.
pub(crate) async fn refuse_body(body: Body, version: Version, headers: &HeaderMap) -> bool {
    let waits = version == Version::HTTP_11
        && headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    !waits && drain(body.into_data_stream()).await
}

/// The answer to a refused request; unless its body was read to the end
/// (`body_read`), it says the connection closes (hyper will not read the
/// rest), so a client that waited with `Expect: 100-continue` knows not to
/// send the body on it.
pub(crate) fn refused(e: ApiError, body_read: bool) -> Response {
    let mut resp = e.into_response();
    if !body_read {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Reads and drops a bounded rest of a body we refused; true when it ended
/// within the bounds (the connection can then serve the next request).
pub(crate) async fn drain(mut stream: BodyDataStream) -> bool {
    tokio::time::timeout(DRAIN_FOR, async {
        let mut n = 0;
        loop {
            match stream.next().await {
                None => return true,
                Some(Ok(c)) => {
                    n += c.len();
                    if n > DRAIN_BYTES {
                        return false;
                    }
                }
                Some(Err(_)) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// The answer of `POST /create`, fields in this order.
#[derive(Serialize)]
struct Created<'a> {
    id: &'a str,
    version: u64,
    /// Quoted, as in the `ETag` header.
    etag: &'a str,
}

/// The answer of `DELETE /post`.
#[derive(Serialize)]
struct Deleted<'a> {
    id: &'a str,
    version: u64,
}

/// The `?id=` parameter of `/post`.
#[derive(Deserialize)]
struct IdParam {
    id: String,
}

fn id_param(q: Result<Query<IdParam>, QueryRejection>) -> Result<String, ApiError> {
    let Ok(Query(IdParam { id })) = q else {
        return Err(ApiError::BadRequest(
            "missing query parameter id (use /post?id=ID)".into(),
        ));
    };
    if !valid_id(id.as_bytes()) {
        return Err(ApiError::Invalid {
            field: Some("id".into()),
            message: format!("id must be 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 . _ ~ -"),
        });
    }
    Ok(id)
}

/// `"<hex>"`, the HTTP form of an etag.
pub(crate) fn quoted_etag(etag: &[u8; 16]) -> String {
    let hex = etag_hex(etag);
    let mut s = String::with_capacity(34);
    s.push('"');
    // etag_hex is ASCII by construction.
    s.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    s.push('"');
    s
}

/// All routes, with the request metrics around them.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/create", post(create))
        .route("/post", get(get_post).delete(delete_post))
        .route("/bulk", post(crate::bulk::bulk))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = Route::of(req.method(), req.uri().path());
    let start = Instant::now();
    let _in_flight = s.metrics.in_flight();
    let resp = next.run(req).await;
    let elapsed = start.elapsed();
    s.metrics.request(route, resp.status().as_u16(), elapsed);
    debug!(
        ?route,
        status = resp.status().as_u16(),
        elapsed_us = elapsed.as_micros() as u64,
        "request"
    );
    resp
}

/// `POST /create`: validate, serialize once, store and publish, then 201.
async fn create(
    State(s): State<AppState>,
    version: Version,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Err(e) = s
        .authorize(&headers)
        .and_then(|()| require_media(&headers, &["application/json"], "application/json"))
    {
        let read = refuse_body(body, version, &headers).await;
        return Ok(refused(e, read));
    }
    let bytes = match read_body(body, version, &headers, s.max_body_bytes, s.body_timeout).await {
        Ok(bytes) => bytes,
        // Only a bounded part of a body over the limit is read.
        Err(e @ ApiError::TooLarge { .. }) => return Ok(refused(e, false)),
        Err(e) => return Err(e),
    };
    let post = Post::parse(&bytes, &s.limits)?;
    let out = post.to_body();
    let written = s.backend.put(&post.id, &out).await?;
    let etag = quoted_etag(&written.etag);
    let location = format!("/post?id={}", post.id);
    let reply = Created {
        id: &post.id,
        version: written.version,
        etag: &etag,
    };
    let mut resp = (StatusCode::CREATED, Json(reply)).into_response();
    let h = resp.headers_mut();
    // Both values are ASCII (hex, and id characters that need no escaping).
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `DELETE /post?id=ID`: 200 with the version of the delete, or 404.
async fn delete_post(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<IdParam>, QueryRejection>,
) -> Result<Response, ApiError> {
    s.authorize(&headers)?;
    let id = id_param(q)?;
    match s.backend.delete(&id).await? {
        Some(version) => Ok(Json(Deleted { id: &id, version }).into_response()),
        None => Err(ApiError::NotFound { id }),
    }
}

/// `GET /post?id=ID`: the stored body, read from Redis, with its ETag and version.
async fn get_post(
    State(s): State<AppState>,
    q: Result<Query<IdParam>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = id_param(q)?;
    let Some(stored) = s.backend.get(&id).await? else {
        return Err(ApiError::NotFound { id });
    };
    let (etag, version, body_len) = match RecordRef::decode(&stored) {
        Ok(r) => (r.etag, r.version, r.body.len()),
        Err(e) => {
            error!(%id, error = %e, "stored record is malformed");
            return Err(ApiError::Internal("stored record is malformed".into()));
        }
    };
    // The body is the record's tail: slice it out instead of copying it.
    let stored = Bytes::from(stored);
    let body = stored.slice(stored.len() - body_len..);
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&quoted_etag(&etag)) {
        h.insert(header::ETAG, v);
    }
    h.insert("x-heavyread-version", HeaderValue::from(version));
    Ok(resp)
}

/// `GET /health`: the process is up.
async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: Redis answers and the function library is loaded.
async fn ready(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match s.backend.readiness().await {
        Readiness::Ready => Ok(Json(json!({ "status": "ready" }))),
        Readiness::LibraryMissing => Err(ApiError::Unavailable(
            "redis function library not loaded yet".into(),
        )),
        Readiness::Unreachable(_) => Err(ApiError::Unavailable("redis unavailable".into())),
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn no_route() -> ApiError {
    ApiError::NoRoute
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_exact() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
    }

    #[test]
    fn media_type_ignores_parameters_and_case() {
        let mut h = HeaderMap::new();
        let check = |h: &HeaderMap| require_media(h, &["application/json"], "application/json");
        assert!(check(&h).is_err());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(check(&h).is_ok());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(check(&h).is_err());
    }

    #[test]
    fn etags_are_quoted_hex() {
        assert_eq!(quoted_etag(&[0xab; 16]), format!("\"{}\"", "ab".repeat(16)));
    }
}
