//! DBSC on the wire (W3C WebAppSec draft): the headers and the session
//! instruction, for the service's `/auth/dbsc/*` and the library's layer.
//! The protocol's rules (challenges, proofs, binding) are
//! `tessera_core::dbsc`'s.

use http::HeaderName;
use serde_json::{Value, json};
use tessera_core::dpop::DpopAlg;

/// Sent after login: where and how to register.
pub const SECURE_SESSION_REGISTRATION: HeaderName = HeaderName::from_static("secure-session-registration");
/// The browser's proof (registration and refresh).
pub const SECURE_SESSION_RESPONSE: HeaderName = HeaderName::from_static("secure-session-response");
/// The DBSC session a refresh is for.
pub const SEC_SECURE_SESSION_ID: HeaderName = HeaderName::from_static("sec-secure-session-id");
/// A challenge for the next proof (a 403, or pushed early).
pub const SECURE_SESSION_CHALLENGE: HeaderName = HeaderName::from_static("secure-session-challenge");
/// A request sent without its bound cookie on purpose (the refresh failed).
pub const SECURE_SESSION_SKIPPED: HeaderName = HeaderName::from_static("secure-session-skipped");

/// The service's registration and refresh paths.
pub const REGISTER_PATH: &str = "/auth/dbsc/register";
pub const REFRESH_PATH: &str = "/auth/dbsc/refresh";

/// `Secure-Session-Registration: (ES256 RS256);path="…";challenge="…"`:
/// an RFC 9651 list of one inner list of tokens with string parameters.
/// The challenge and path are base64url and a plain path, so they need no
/// escaping; anything else is dropped rather than break the quoting.
pub fn registration_header(algs: &[DpopAlg], path: &str, challenge: &str) -> String {
    let algs: Vec<&str> = algs.iter().map(|a| a.name()).collect();
    format!(
        "({});path=\"{}\";challenge=\"{}\"",
        algs.join(" "),
        sf_string(path),
        sf_string(challenge)
    )
}

/// `Secure-Session-Challenge: "<challenge>";id="<session id>"`.
pub fn challenge_header(challenge: &str, session_id: &str) -> String {
    format!("\"{}\";id=\"{}\"", sf_string(challenge), sf_string(session_id))
}

/// An RFC 9651 sf-string's content: printable ASCII with `"` and `\`
/// escaped (values here never carry them; they are escaped, not trusted).
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The session identifier a refresh names in `Sec-Secure-Session-Id`: an
/// sf-string (`"ses_…"`) or, as some user agents send it, a bare token.
pub fn session_id(value: &[u8]) -> Option<&str> {
    let v = std::str::from_utf8(value).ok()?.trim();
    let v = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => v,
    };
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'))
        .then_some(v)
}

/// The `Set-Cookie` attributes of the bound cookie, which the session
/// instruction must repeat exactly (checklist DB-04): host-only, whole
/// site, TLS only, no script access.
pub const BOUND_COOKIE_ATTRIBUTES: &str = "Path=/; Secure; HttpOnly; SameSite=Lax";

/// `Set-Cookie` for the bound cookie.
pub fn bound_cookie(name: &str, value: &str, max_age_secs: i64) -> String {
    format!(
        "{name}={value}; {BOUND_COOKIE_ATTRIBUTES}; Max-Age={}",
        max_age_secs.max(0)
    )
}

/// The JSON session instruction of a registration or refresh answer.
pub fn session_instruction(session_id: &str, cookie_name: &str) -> Value {
    json!({
        "session_identifier": session_id,
        "refresh_url": REFRESH_PATH,
        "scope": {"include_site": false, "scope_specification": []},
        "credentials": [{"type": "cookie", "name": cookie_name, "attributes": BOUND_COOKIE_ATTRIBUTES}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_01_registration_header_is_an_sf_list() {
        let h = registration_header(&[DpopAlg::Es256, DpopAlg::Rs256], REGISTER_PATH, "abc-_1");
        assert_eq!(
            h,
            r#"(ES256 RS256);path="/auth/dbsc/register";challenge="abc-_1""#
        );
        assert_eq!(challenge_header("c\"x", "ses_1"), r#""c\"x";id="ses_1""#);
    }

    #[test]
    fn session_ids_quoted_or_bare() {
        assert_eq!(session_id(b"\"ses_abc\""), Some("ses_abc"));
        assert_eq!(session_id(b"ses_abc"), Some("ses_abc"));
        for bad in [&b""[..], b"\"\"", b"\"open", b"a b", b"\"a\\b\""] {
            assert_eq!(session_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn db_04_instruction_repeats_the_cookie_attributes() {
        let i = session_instruction("ses_1", "__Host-tessera-dbsc");
        assert_eq!(i["credentials"][0]["attributes"], BOUND_COOKIE_ATTRIBUTES);
        assert!(bound_cookie("__Host-tessera-dbsc", "v", 600).contains(BOUND_COOKIE_ATTRIBUTES));
        assert!(!BOUND_COOKIE_ATTRIBUTES.contains("Partitioned"));
        assert_eq!(i["scope"]["include_site"], false);
    }
}
