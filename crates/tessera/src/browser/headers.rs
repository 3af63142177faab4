//! Security response headers (CS-08) and refusing simple content types on
//! JSON routes (CS-05).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tessera_http::csrf::is_safe_method;
use tessera_http::problem::Code;
use tower::{Layer, Service};

use super::problem::problem;

/// Adds, when the handler did not set them:
/// `Content-Security-Policy: frame-ancestors 'none'` (or the policy given),
/// `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`,
/// `X-Content-Type-Options: nosniff`, and `Strict-Transport-Security` only
/// when [`SecurityHeadersLayer::hsts`] says the app is served over TLS.
#[derive(Debug, Clone)]
pub struct SecurityHeadersLayer {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Default for SecurityHeadersLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SecurityHeadersLayer {
    pub fn new() -> Self {
        Self {
            headers: vec![
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("frame-ancestors 'none'"),
                ),
                (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
                (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
        }
    }

    /// Replaces the default CSP; keep `frame-ancestors` in it. An invalid
    /// header value keeps the default.
    pub fn content_security_policy(mut self, csp: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(csp) {
            self.set(header::CONTENT_SECURITY_POLICY, v);
        }
        self
    }

    /// Sends `Strict-Transport-Security: max-age=<secs>[; includeSubDomains]`.
    /// Only for apps served over HTTPS (CS-09 asks for ≥ 31536000).
    pub fn hsts(mut self, max_age_secs: u64, include_subdomains: bool) -> Self {
        let v = if include_subdomains {
            format!("max-age={max_age_secs}; includeSubDomains")
        } else {
            format!("max-age={max_age_secs}")
        };
        if let Ok(v) = HeaderValue::try_from(v) {
            self.set(header::STRICT_TRANSPORT_SECURITY, v);
        }
        self
    }

    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name, value));
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders {
            inner,
            headers: self.headers.clone().into(),
        }
    }
}

/// The service of [`SecurityHeadersLayer`].
#[derive(Debug, Clone)]
pub struct SecurityHeaders<S> {
    inner: S,
    headers: std::sync::Arc<[(HeaderName, HeaderValue)]>,
}

impl<S, ReqB, ResB> Service<axum::http::Request<ReqB>> for SecurityHeaders<S>
where
    S: Service<axum::http::Request<ReqB>, Response = axum::http::Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<ReqB>) -> Self::Future {
        let fut = self.inner.call(req);
        let headers = self.headers.clone();
        Box::pin(async move {
            let mut resp = fut.await?;
            let h = resp.headers_mut();
            for (n, v) in headers.iter() {
                if !h.contains_key(n) {
                    h.insert(n.clone(), v.clone());
                }
            }
            Ok(resp)
        })
    }
}

/// Middleware for JSON routes: a POST whose `Content-Type` is not
/// `application/json` (or `application/*+json`), or another state-changing request
/// with a non-JSON `Content-Type`, is refused with 415
/// `unsupported_media_type`. (PUT, PATCH and DELETE always need a CORS
/// preflight, so they may come without a body.) Cross-site pages can send `text/plain`,
/// form-encoded and multipart bodies without a CORS preflight; requiring
/// JSON makes such a forgery impossible (CS-05). Use it with
/// `axum::middleware::from_fn(tessera::browser::json_only)`.
pub async fn json_only(req: Request, next: Next) -> Response {
    let body_optional =
        *req.method() != axum::http::Method::POST && !req.headers().contains_key(header::CONTENT_TYPE);
    if is_safe_method(req.method().as_str().as_bytes()) || body_optional || is_json(req.headers()) {
        return next.run(req).await;
    }
    problem(
        Code::UnsupportedMediaType,
        "this endpoint takes Content-Type: application/json",
    )
}

fn is_json(h: &axum::http::HeaderMap) -> bool {
    let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}
