//! RFC 9457 problem documents (SPEC §3): `{"type":
//! "urn:tessera:error:<code>", "title", "status", "detail", "code"}` as
//! `application/problem+json`. Each [`Code`] has one status and one title
//! whichever face answers, and a core error maps to one code and one
//! client-safe detail ([`Code::of`], [`core_detail`]).

use std::borrow::Cow;
use std::fmt;

use http::{HeaderValue, StatusCode, header};
use serde::{Serialize, Serializer};
use tessera_core::Error as CoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

macro_rules! codes {
    ($($variant:ident => $code:literal, $status:ident, $title:literal;)+) => {
        /// A stable problem `code` (SPEC §3, `docs/CONTRACTS.md`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $($variant,)+
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)+ }
            }

            pub const fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status,)+ }
            }

            pub const fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)+ }
            }
        }
    };
}

codes! {
    SessionInvalid => "session_invalid", UNAUTHORIZED, "Session token invalid";
    SessionExpired => "session_expired", UNAUTHORIZED, "Session expired";
    SessionRevoked => "session_revoked", UNAUTHORIZED, "Session revoked";
    Unauthorized => "unauthorized", UNAUTHORIZED, "Unauthorized";
    Forbidden => "forbidden", FORBIDDEN, "Forbidden";
    InsufficientUserAuthentication => "insufficient_user_authentication", FORBIDDEN, "Insufficient user authentication";
    CsrfRejected => "csrf_rejected", FORBIDDEN, "Cross-site request rejected";
    NotFound => "not_found", NOT_FOUND, "Not found";
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED, "Method not allowed";
    Conflict => "conflict", CONFLICT, "Conflict";
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE, "Payload too large";
    UnsupportedMediaType => "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type";
    HeadersTooLarge => "headers_too_large", REQUEST_HEADER_FIELDS_TOO_LARGE, "Request headers too large";
    ValidationFailed => "validation_failed", BAD_REQUEST, "Validation failed";
    RequestTimeout => "request_timeout", REQUEST_TIMEOUT, "Request timeout";
    RateLimited => "rate_limited", TOO_MANY_REQUESTS, "Too many requests";
    StoreUnavailable => "store_unavailable", SERVICE_UNAVAILABLE, "Store unavailable";
    Overloaded => "overloaded", SERVICE_UNAVAILABLE, "Overloaded";
    Internal => "internal", INTERNAL_SERVER_ERROR, "Internal error";
}

impl Code {
    /// The code of a core error.
    pub fn of(e: &CoreError) -> Code {
        match e {
            CoreError::SessionInvalid => Code::SessionInvalid,
            CoreError::SessionExpired => Code::SessionExpired,
            CoreError::SessionRevoked => Code::SessionRevoked,
            CoreError::NotFound => Code::NotFound,
            CoreError::Validation { .. } => Code::ValidationFailed,
            CoreError::DataTooLarge { .. } => Code::PayloadTooLarge,
            CoreError::Conflict => Code::Conflict,
            CoreError::Store(_) => Code::StoreUnavailable,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The detail a client sees for a core error. Store errors may name files
/// or hosts, so their detail is fixed; the caller logs the error itself.
pub fn core_detail(e: &CoreError) -> Cow<'static, str> {
    match e {
        CoreError::NotFound => Cow::Borrowed("no active session with this handle"),
        CoreError::DataTooLarge { limit } => Cow::Owned(format!(
            "data: the session data would be larger than {limit} bytes"
        )),
        CoreError::Store(_) => Cow::Borrowed("the session store is unavailable; try again later"),
        other => Cow::Owned(other.to_string()),
    }
}

/// One problem document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem<'a> {
    pub code: Code,
    pub detail: &'a str,
}

/// `"urn:tessera:error:<code>"`, written without an intermediate string.
struct TypeUri(Code);

impl Serialize for TypeUri {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("urn:tessera:error:{}", self.0))
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    type_: TypeUri,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
}

impl<'a> Problem<'a> {
    pub fn new(code: Code, detail: &'a str) -> Self {
        Self { code, detail }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The JSON document.
    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            type_: TypeUri(self.code),
            title: self.code.title(),
            status: self.code.status().as_u16(),
            detail: self.detail,
            code: self.code.as_str(),
        };
        // Serializing strings and a number cannot fail.
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The response: the status, `Content-Type: application/problem+json`
    /// and the document. Each face adds its own headers (challenges,
    /// `Cache-Control`).
    pub fn to_response(&self) -> http::Response<Vec<u8>> {
        let mut res = http::Response::new(self.to_json());
        *res.status_mut() = self.status();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

#[cfg(test)]
mod tests {
    use tessera_core::StoreError;

    use super::*;

    #[test]
    fn renders_rfc9457() {
        let res = Problem::new(Code::CsrfRejected, "a \"quoted\" detail").to_response();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "urn:tessera:error:csrf_rejected",
                "title": "Cross-site request rejected",
                "status": 403,
                "detail": "a \"quoted\" detail",
                "code": "csrf_rejected",
            })
        );
    }

    #[test]
    fn codes_are_unique_with_one_status_and_title() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(
                c.status().is_client_error() || c.status().is_server_error(),
                "{c}"
            );
            assert!(!c.title().is_empty());
            assert!(
                c.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{c}"
            );
        }
    }

    #[test]
    fn core_errors_map_to_one_code_and_a_safe_detail() {
        let cases: [(CoreError, &str, u16); 8] = [
            (CoreError::SessionInvalid, "session_invalid", 401),
            (CoreError::SessionExpired, "session_expired", 401),
            (CoreError::SessionRevoked, "session_revoked", 401),
            (CoreError::NotFound, "not_found", 404),
            (
                CoreError::Validation {
                    field: "subject",
                    message: "too long".into(),
                },
                "validation_failed",
                400,
            ),
            (CoreError::Conflict, "conflict", 409),
            (CoreError::DataTooLarge { limit: 2 }, "payload_too_large", 413),
            (
                CoreError::Store(StoreError::Unavailable("/secret/path.db".into())),
                "store_unavailable",
                503,
            ),
        ];
        for (e, code, status) in cases {
            let c = Code::of(&e);
            assert_eq!((c.as_str(), c.status().as_u16()), (code, status));
            let d = core_detail(&e);
            assert!(!d.contains("secret"), "{d}");
        }
        assert_eq!(
            core_detail(&CoreError::Validation {
                field: "subject",
                message: "too long".into()
            }),
            "subject: too long"
        );
        assert!(core_detail(&CoreError::DataTooLarge { limit: 2 }).starts_with("data:"));
    }
}
