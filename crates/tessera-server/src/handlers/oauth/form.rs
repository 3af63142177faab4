//! `application/x-www-form-urlencoded` bodies of the OAuth endpoints.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};

use super::{MAX_PARAMS, OAuthFailure};
use crate::extract::BodyLimit;

/// Parameters that may be given more than once: RFC 8707 §2 `resource`
/// and RFC 8693 §2.1 `audience` (one value per target). Every other
/// parameter is refused when repeated (RFC 6749 §3.1, §3.2).
const REPEATABLE: &[&str] = &["resource", "audience"];

/// A decoded `application/x-www-form-urlencoded` body.
#[derive(Debug, Default)]
pub(super) struct Form(pub(super) Vec<(String, String)>);

impl Form {
    /// The parameter's value; an empty value counts as absent.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of a parameter that may repeat (RFC 8707 `resource`,
    /// RFC 8693 `audience`), empty ones left out.
    pub(super) fn get_all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub(super) fn parse(body: &[u8]) -> Result<Form, OAuthFailure> {
        let text = std::str::from_utf8(body).map_err(|_| OAuthFailure::request("the body is not UTF-8"))?;
        let mut out: Vec<(String, String)> = Vec::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || OAuthFailure::request("the body is not valid application/x-www-form-urlencoded");
            let k = form_decode(k).ok_or_else(bad)?;
            let v = form_decode(v).ok_or_else(bad)?;
            if !REPEATABLE.contains(&k.as_str()) && out.iter().any(|(o, _)| *o == k) {
                return Err(OAuthFailure::request(format!(
                    "parameter {k} is given more than once"
                )));
            }
            if out.len() >= MAX_PARAMS {
                return Err(OAuthFailure::request("too many parameters"));
            }
            out.push((k, v));
        }
        Ok(Form(out))
    }
}

/// Decodes one form-urlencoded component (`+` is a space). Stricter than
/// the WHATWG parser (`form_urlencoded`), which keeps a malformed `%` escape
/// as text and replaces invalid UTF-8: a credential that does not decode
/// exactly is refused rather than guessed at.
pub(super) fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let escapes_ok = b.iter().enumerate().filter(|(_, c)| **c == b'%').all(|(i, _)| {
        b.get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return None;
    }
    let spaced = s.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8().ok()?;
    Some(decoded.into_owned())
}

/// The headers and the form of a POST to an OAuth endpoint.
pub(super) async fn read_form(req: Request) -> Result<(HeaderMap, Form), OAuthFailure> {
    let headers = req.headers().clone();
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if essence != "application/x-www-form-urlencoded" {
        return Err(OAuthFailure::request(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
    let body = Bytes::from_request(req, &()).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            OAuthFailure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                match limit {
                    Some(n) => format!("the request body is larger than {n} bytes"),
                    None => "the request body is too large".into(),
                },
            )
        } else {
            OAuthFailure::request("the request body could not be read")
        }
    })?;
    Ok((headers, Form::parse(&body)?))
}
