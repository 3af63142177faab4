//! The CSRF decision (OWASP CSRF cheat sheet: Fetch Metadata first, the
//! request's origin as the fallback), as one pure function, [`judge`], from
//! what a request says about where it comes from ([`FetchContext`]) and
//! the site's [`CsrfPolicy`] to a [`Verdict`].
//!
//! For a state-changing method (anything but `GET`, `HEAD`, `OPTIONS`,
//! compared case-sensitively; an unknown method counts as state-changing):
//!
//! 1. `Sec-Fetch-Site` (byte for byte, as browsers send it): `same-origin`
//!    and `none` pass; `same-site` passes only with
//!    [`CsrfPolicy::allow_same_site`]; `cross-site` and anything else are
//!    refused. A listed origin changes none of this.
//! 2. Without it, `Origin` must be an origin as browsers serialize it
//!    ([`crate::origin`]) and acceptable: one of
//!    [`CsrfPolicy::allowed_origins`] if any are listed (the list replaces
//!    the request's own origin), else the request's own. `Origin: null`
//!    proves nothing and is refused.
//! 3. Without `Origin`, the origin of `Referer` must be acceptable.
//! 4. With none of these the request has no browser evidence at all:
//!    allowed on no evidence ([`Evidence::None`]); a face that has another
//!    defence (the library's CSRF token) asks for it then.
//!
//! "The request's own origin" is the scheme and host it was sent to. The
//! host is `Host` (or HTTP/2's `:authority`), or `X-Forwarded-Host` when
//! forwarded headers are trusted; the scheme is `X-Forwarded-Proto` when
//! trusted and present, else either `http` or `https`. A default port in
//! the host is ignored.

use http::HeaderMap;
use http::header::{HOST, ORIGIN, REFERER};

use crate::origin;

const SEC_FETCH_SITE: &str = "sec-fetch-site";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// `GET`, `HEAD` and `OPTIONS` change nothing (RFC 9110 §9.2.1). `TRACE`
/// is not among them here: no browser can send it, so treating it as
/// state-changing costs nothing and leaves no method unchecked that a
/// handler might act on. Methods are case-sensitive: `get` is not `GET`.
pub fn is_safe_method(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"OPTIONS")
}

/// What a request says about where it comes from, borrowed from its
/// headers. A header sent more than once counts by its first value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchContext<'h> {
    /// The method of the request being judged; `None` when it is not known
    /// (forward auth without a method header), which counts as
    /// state-changing.
    pub method: Option<&'h [u8]>,
    pub sec_fetch_site: Option<&'h [u8]>,
    pub origin: Option<&'h [u8]>,
    pub referer: Option<&'h [u8]>,
    /// `Host`, or the `:authority` of an HTTP/2 request without one.
    pub host: Option<&'h [u8]>,
    pub forwarded_host: Option<&'h [u8]>,
    pub forwarded_proto: Option<&'h [u8]>,
}

impl<'h> FetchContext<'h> {
    /// The context of a request with these headers; `authority` is the
    /// request URI's (HTTP/2 carries the host there).
    pub fn from_headers(
        headers: &'h HeaderMap,
        method: Option<&'h [u8]>,
        authority: Option<&'h str>,
    ) -> Self {
        let get = |name: &str| headers.get(name).map(|v| v.as_bytes());
        FetchContext {
            method,
            sec_fetch_site: get(SEC_FETCH_SITE),
            origin: headers.get(ORIGIN).map(|v| v.as_bytes()),
            referer: headers.get(REFERER).map(|v| v.as_bytes()),
            host: headers
                .get(HOST)
                .map(|v| v.as_bytes())
                .or(authority.map(str::as_bytes)),
            forwarded_host: get(X_FORWARDED_HOST),
            forwarded_proto: get(X_FORWARDED_PROTO),
        }
    }
}

/// Which requests a site accepts for state-changing methods, borrowed from
/// its configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CsrfPolicy<'a> {
    /// Origins as [`crate::origin::parse_allowed`] gives them. When not
    /// empty, these and only these are accepted in `Origin`/`Referer`.
    pub allowed_origins: &'a [String],
    /// Accept `Sec-Fetch-Site: same-site` (sibling subdomains).
    pub allow_same_site: bool,
    /// The request comes through a proxy that sets `X-Forwarded-Host` and
    /// `X-Forwarded-Proto` itself (replacing any copy the client sent).
    pub trust_forwarded_headers: bool,
}

/// The decision about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow(Evidence),
    Refuse(Reason),
}

impl Verdict {
    pub fn is_refused(self) -> bool {
        matches!(self, Verdict::Refuse(_))
    }
}

/// Why a request was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The method changes nothing.
    SafeMethod,
    /// `Sec-Fetch-Site` said so.
    FetchMetadata,
    /// An acceptable `Origin`.
    Origin,
    /// An acceptable `Referer` (no `Origin` was sent).
    Referer,
    /// No `Sec-Fetch-Site`, `Origin` or `Referer`: not a browser (browsers
    /// send `Origin` with every state-changing request), or one hiding where
    /// it comes from.
    None,
}

/// Why a request was refused; [`Reason::detail`] is the problem detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    CrossSite,
    SameSite,
    UnknownFetchSite,
    NullOrigin,
    MalformedOrigin,
    OriginNotAllowed,
    RefererNotAllowed,
}

impl Reason {
    pub fn detail(self) -> &'static str {
        match self {
            Reason::CrossSite => "a cross-site request may not change state (Sec-Fetch-Site: cross-site)",
            Reason::SameSite => "a same-site request may not change state here (Sec-Fetch-Site: same-site)",
            Reason::UnknownFetchSite => "the Sec-Fetch-Site header has an unknown value",
            Reason::NullOrigin => "a request from an opaque origin (Origin: null) may not change state",
            Reason::MalformedOrigin => "the Origin header is not an origin as browsers send it",
            Reason::OriginNotAllowed => "the request's Origin is neither its own nor an allowed origin",
            Reason::RefererNotAllowed => {
                "the request's Referer is neither from its own nor from an allowed origin"
            }
        }
    }
}

/// The CSRF decision; see the [module docs](self) for the rule.
pub fn judge(ctx: &FetchContext<'_>, policy: &CsrfPolicy<'_>) -> Verdict {
    if ctx.method.is_some_and(is_safe_method) {
        return Verdict::Allow(Evidence::SafeMethod);
    }
    if let Some(site) = ctx.sec_fetch_site {
        return match site {
            b"same-origin" | b"none" => Verdict::Allow(Evidence::FetchMetadata),
            b"same-site" if policy.allow_same_site => Verdict::Allow(Evidence::FetchMetadata),
            b"same-site" => Verdict::Refuse(Reason::SameSite),
            b"cross-site" => Verdict::Refuse(Reason::CrossSite),
            _ => Verdict::Refuse(Reason::UnknownFetchSite),
        };
    }
    if let Some(o) = ctx.origin {
        if o == b"null" {
            return Verdict::Refuse(Reason::NullOrigin);
        }
        return match std::str::from_utf8(o).ok().and_then(origin::serialized) {
            None => Verdict::Refuse(Reason::MalformedOrigin),
            Some(o) if acceptable(&o, ctx, policy) => Verdict::Allow(Evidence::Origin),
            Some(_) => Verdict::Refuse(Reason::OriginNotAllowed),
        };
    }
    if let Some(r) = ctx.referer {
        return match std::str::from_utf8(r).ok().and_then(origin::of_url) {
            Some(o) if acceptable(&o, ctx, policy) => Verdict::Allow(Evidence::Referer),
            _ => Verdict::Refuse(Reason::RefererNotAllowed),
        };
    }
    Verdict::Allow(Evidence::None)
}

/// Whether `origin` (a lowercase serialization) is listed, or, with no
/// list, the request's own.
fn acceptable(origin: &str, ctx: &FetchContext<'_>, policy: &CsrfPolicy<'_>) -> bool {
    if !policy.allowed_origins.is_empty() {
        return policy
            .allowed_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(origin));
    }
    is_own(origin, ctx, policy.trust_forwarded_headers)
}

fn is_own(origin: &str, ctx: &FetchContext<'_>, trust_forwarded: bool) -> bool {
    let host = match ctx.forwarded_host.filter(|_| trust_forwarded) {
        Some(h) => h,
        None => match ctx.host {
            Some(h) => h,
            None => return false,
        },
    };
    // The serialization is `scheme://rest`, the scheme http or https.
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if let Some(proto) = ctx.forwarded_proto.filter(|_| trust_forwarded) {
        // A chain of proxies appends; the first is the one the browser saw.
        let first = proto
            .split(|&b| b == b',')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if !first.eq_ignore_ascii_case(scheme.as_bytes()) {
            return false;
        }
    }
    let default_port: &[u8] = if scheme == "https" { b":443" } else { b":80" };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    !host.is_empty() && host.eq_ignore_ascii_case(rest.as_bytes())
}

#[cfg(test)]
mod tests;
