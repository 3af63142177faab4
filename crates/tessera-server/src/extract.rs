//! Extractors whose every rejection is an [`ApiError`] problem document.
//!
//! axum's own `Json`, `Path` and `Query` answer rejections in plain text; these
//! wrappers keep the wire format uniform and make the `detail` name the
//! offending field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// The configured body limit, put into request extensions by the edge
/// middleware so rejections can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON request body. Requires `Content-Type: application/json` (PATCH
/// also takes `application/merge-patch+json`), at most `max_body_bytes`, and
/// a document that deserializes into `T` with nothing after it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_content_type(req.method(), req.headers().get(header::CONTENT_TYPE))?;
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(match limit {
                    Some(n) => format!("the request body is larger than {n} bytes"),
                    None => "the request body is too large".into(),
                })
            } else {
                ApiError::validation("the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

fn check_content_type(method: &Method, value: Option<&header::HeaderValue>) -> Result<(), ApiError> {
    let patch = method == Method::PATCH;
    let expected = if patch {
        "Content-Type must be application/json or application/merge-patch+json"
    } else {
        "Content-Type must be application/json"
    };
    let Some(value) = value else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{expected}; none was given"
        )));
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if essence.eq_ignore_ascii_case("application/json")
        || (patch && essence.eq_ignore_ascii_case("application/merge-patch+json"))
    {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "{expected}; got {:?}",
        essence.to_ascii_lowercase()
    )))
}

/// Deserializes `bytes` as `T`, naming the failing field in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(&path, &inner)
    })?;
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

fn json_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::validation(format!("malformed JSON: {e}"))
        }
        Category::Data if path == "." || path.is_empty() => ApiError::validation(e.to_string()),
        Category::Data => ApiError::validation(format!("{path}: {e}")),
    }
}

/// Path parameters; a rejection is 400 `validation_failed`.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|rej| ApiError::validation(format!("path: {}", rej.body_text())))
    }
}

/// A query string; a rejection (unknown parameter, wrong type) is 400
/// `validation_failed`.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|rej| {
                let text = rej.body_text();
                let text = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError::validation(format!("query: {text}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        level: u8,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        subject: String,
        auth: Option<Inner>,
    }

    fn detail(r: Result<Outer, ApiError>) -> String {
        match r {
            Err(ApiError::Validation(d)) => d,
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn details_name_the_field() {
        let d = detail(parse_json(br#"{"subject":"a","auth":{"level":"x"}}"#));
        assert!(d.starts_with("auth.level: invalid type"), "{d}");
        let d = detail(parse_json(br#"{"subject":"a","colour":1}"#));
        assert!(d.contains("unknown field `colour`"), "{d}");
        let d = detail(parse_json(br#"{"subject":"a","auth":{"level":1,"x":2}}"#));
        assert!(d.starts_with("auth.x: unknown field `x`"), "{d}");
        let d = detail(parse_json(br#"{}"#));
        assert!(d.contains("missing field `subject`"), "{d}");
        let d = detail(parse_json(br#"{"subject":"#));
        assert!(d.starts_with("malformed JSON"), "{d}");
        let d = detail(parse_json(br#"{"subject":"a"} {}"#));
        assert!(d.contains("trailing"), "{d}");
    }

    #[test]
    fn content_types() {
        let json = header::HeaderValue::from_static("application/json; charset=utf-8");
        let patch = header::HeaderValue::from_static("application/merge-patch+json");
        let text = header::HeaderValue::from_static("text/plain");
        assert!(check_content_type(&Method::POST, Some(&json)).is_ok());
        assert!(check_content_type(&Method::PATCH, Some(&patch)).is_ok());
        assert!(check_content_type(&Method::POST, Some(&patch)).is_err());
        assert!(check_content_type(&Method::POST, Some(&text)).is_err());
        assert!(matches!(
            check_content_type(&Method::POST, None),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
