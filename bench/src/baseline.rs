//! `baseline-axum`: the design the readers replace, as a baseline. A small
//! axum service that reads Redis on every request: `HGET {prefix}:posts id`,
//! decode the record, answer the body with its ETag (or 304 for a matching
//! `If-None-Match`). One multiplexed Redis connection carries the requests
//! of every HTTP connection, pipelined, which is how such a service is
//! usually written and its fastest simple form.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use heavyread_sync::record::etag_hex;
use heavyread_sync::{Keys, Op, RecordRef};
use serde::Deserialize;
use tracing::warn;

struct Shared {
    redis: redis::aio::MultiplexedConnection,
    posts: String,
}

#[derive(Deserialize)]
struct IdParam {
    id: String,
}

fn quoted(etag: &[u8; 16]) -> String {
    format!("\"{}\"", String::from_utf8_lossy(&etag_hex(etag)))
}

/// True when an `If-None-Match` value lists `etag` (quoted) or is `*`.
pub fn none_match(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|v| v == "*" || v == etag || v.strip_prefix("W/").is_some_and(|weak| weak == etag))
}

fn error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"error\":\"{msg}\"}}"),
    )
        .into_response()
}

async fn post(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    q: Result<Query<IdParam>, QueryRejection>,
) -> Response {
    let Ok(Query(IdParam { id })) = q else {
        return error(StatusCode::BAD_REQUEST, "missing id");
    };
    let mut con = s.redis.clone();
    let stored: Option<Vec<u8>> = match redis::cmd("HGET")
        .arg(&s.posts)
        .arg(&id)
        .query_async(&mut con)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            warn!(error = %e, "HGET failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "redis unavailable");
        }
    };
    let Some(stored) = stored else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let (etag, body_len) = match RecordRef::decode(&stored) {
        Ok(r) if r.op == Op::Put => (quoted(&r.etag), r.body.len()),
        Ok(_) => return error(StatusCode::NOT_FOUND, "not found"),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "malformed record"),
    };
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &etag));
    let mut resp = if matches {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        // The body is the record's tail: slice it out instead of copying it.
        let stored = Bytes::from(stored);
        let mut r = Response::new(Body::from(stored.slice(stored.len() - body_len..)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag_value);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn ready(State(s): State<Arc<Shared>>) -> StatusCode {
    let mut con = s.redis.clone();
    match redis::cmd("PING").query_async::<String>(&mut con).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Serves on `listen` until the process is stopped.
pub async fn serve(listen: SocketAddr, redis_url: &str, prefix: &str) -> Result<()> {
    let keys = Keys::new(prefix)?;
    let client = redis::Client::open(redis_url)?;
    let redis = client
        .get_multiplexed_async_connection()
        .await
        .context("connect to Redis")?;
    let state = Arc::new(Shared {
        redis,
        posts: keys.posts,
    });
    let app = Router::new()
        .route("/post", get(post))
        .route("/ready", get(ready))
        .with_state(state);
    // Nagle off, as any latency-minded service sets it: with it on, pipelined
    // answers wait for the client's delayed ACK (40 ms).
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?
        .tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                warn!(error = %e, "TCP_NODELAY not set");
            }
        });
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let tag = "\"ab\"";
        assert!(none_match("\"ab\"", tag));
        assert!(none_match("\"x\", W/\"ab\"", tag));
        assert!(none_match("*", tag));
        assert!(!none_match("\"abc\"", tag));
        assert!(!none_match("", tag));
    }
}
