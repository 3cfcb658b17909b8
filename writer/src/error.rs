//! The crate's error type and the JSON error answers of the HTTP routes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why the writer could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid; the message names the flag.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The HTTP server failed (accepting or signal handling).
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// The Redis side could not be set up.
    #[error(transparent)]
    Sync(#[from] heavyread_sync::Error),
}

/// A failed request: the status and the `{"error": ..}` body the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the body is not valid JSON (the parser's message, with line and column).
    Malformed(String),
    /// 400: the request itself is unusable (missing query parameter, unreadable body).
    BadRequest(String),
    /// 401: the write token is missing or wrong.
    Unauthorized,
    /// 404: no such post.
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// 404: no such route.
    NoRoute,
    /// 405: the route exists with another method.
    MethodNotAllowed,
    /// 408: the client stopped sending its body for `--body-timeout`; the
    /// connection is closed after this answer.
    BodyTimeout {
        /// The silence allowed.
        after: std::time::Duration,
    },
    /// 408: a `/create` body was not complete within `--body-timeout` of
    /// its head (plus a second per 64 KiB received), however steadily it
    /// trickled; the connection is closed after this answer.
    BodyLate {
        /// The time allowed for the whole body.
        within: std::time::Duration,
    },
    /// 413: the body exceeds the configured limit.
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// 415: the Content-Type is not the one the route takes.
    UnsupportedMediaType {
        /// The media type expected.
        expected: &'static str,
    },
    /// 422: a field is missing, unknown, or fails validation.
    Invalid {
        /// The field at fault, when there is one.
        field: Option<String>,
        /// What is wrong, for a human.
        message: String,
    },
    /// 500: a bug or a corrupt stored record; logged where it happens.
    Internal(String),
    /// 503: Redis is unreachable or refused the command; nothing was
    /// acknowledged (a connection that broke with the command in flight,
    /// and whose retry failed too, leaves its outcome unknown).
    Unavailable(String),
    /// 504: Redis did not answer within `--redis-timeout`: the command may
    /// have gone out, so a write may still be applied when Redis gets to it.
    RedisTimeout(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound { .. } | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout { .. } | ApiError::BodyLate { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RedisTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The message of the `error` field.
    pub fn message(&self) -> String {
        match self {
            ApiError::Malformed(m) => format!("malformed JSON: {m}"),
            ApiError::BadRequest(m)
            | ApiError::Internal(m)
            | ApiError::Unavailable(m)
            | ApiError::RedisTimeout(m) => m.clone(),
            ApiError::Invalid { message, .. } => message.clone(),
            ApiError::Unauthorized => "missing or invalid bearer token".into(),
            ApiError::NotFound { .. } => "post not found".into(),
            ApiError::NoRoute => "no such route".into(),
            ApiError::MethodNotAllowed => "method not allowed".into(),
            ApiError::BodyTimeout { after } => {
                format!("request body stalled: nothing received for {after:?}")
            }
            ApiError::BodyLate { within } => {
                format!("request body not complete within {within:?}")
            }
            ApiError::TooLarge { limit } => format!("request body exceeds {limit} bytes"),
            ApiError::UnsupportedMediaType { expected } => {
                format!("Content-Type must be {expected}")
            }
        }
    }

    /// The JSON body: `{"error": message}` plus the fields a client can act on.
    pub fn body(&self) -> serde_json::Value {
        let mut v = json!({ "error": self.message() });
        match self {
            ApiError::Invalid {
                field: Some(field), ..
            } => v["field"] = json!(field),
            ApiError::NotFound { id } => v["id"] = json!(id),
            ApiError::TooLarge { limit } => v["limit"] = json!(limit),
            _ => {}
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        match self {
            ApiError::Unauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // The rest of the body may still come: the connection cannot be reused.
            ApiError::BodyTimeout { .. } | ApiError::BodyLate { .. } => {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_name_what_the_client_can_fix() {
        let e = ApiError::Invalid {
            field: Some("title".into()),
            message: "title must not be empty".into(),
        };
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            e.body(),
            json!({"error": "title must not be empty", "field": "title"})
        );
        assert_eq!(
            ApiError::TooLarge { limit: 10 }.body(),
            json!({"error": "request body exceeds 10 bytes", "limit": 10})
        );
        assert_eq!(
            ApiError::NotFound { id: "a".into() }.body(),
            json!({"error": "post not found", "id": "a"})
        );
    }
}
