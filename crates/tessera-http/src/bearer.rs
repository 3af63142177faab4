//! Access tokens at resource servers (RFC 6750, RFC 9449 §7): reading
//! `Authorization: Bearer|DPoP <token>` and the `DPoP` proof header, and
//! writing the `WWW-Authenticate` challenges. The service's `/auth/verify`
//! and the library's resource extractor both use these, so a client sees
//! the same answers from either.

use http::header::{AUTHORIZATION, HeaderMap, HeaderName};
use tessera_core::dpop::{ProofHeader, Scheme};

/// The `DPoP` request header (RFC 9449 §4.1).
pub const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header (RFC 9449 §8).
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The TLS client certificate of a request, as its RFC 8705 thumbprint
/// (base64url of the SHA-256 of the leaf's DER, `cnf.x5t#S256`). The TLS
/// listener, or a trusted proxy's header, puts it in the request's
/// extensions; resource checks and token binding read it from there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCertThumbprint(pub String);

impl ClientCertThumbprint {
    /// The thumbprint of a DER certificate.
    pub fn from_der(der: &[u8]) -> ClientCertThumbprint {
        // `TokenHash::of_secret` is the core's SHA-256.
        let digest = tessera_core::secret::TokenHash::of_secret(der);
        ClientCertThumbprint(tessera_core::b64url::encode(digest.as_bytes()))
    }
}

/// The client certificate a TLS-terminating proxy forwarded in a header it
/// sets itself (nginx: `proxy_set_header X-SSL-Client-Cert
/// $ssl_client_escaped_cert;`): PEM, URL-encoded or not. Only a header
/// the deployment names is read, and only there may it be trusted — the
/// proxy must overwrite it on every request (RFC 8705 §6.4). `None` when
/// absent, empty, repeated or not a certificate.
pub fn forwarded_client_cert(headers: &HeaderMap, name: &HeaderName) -> Option<ClientCertThumbprint> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut values = headers.get_all(name).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return None;
    };
    let raw = v.as_bytes().trim_ascii();
    if raw.is_empty() || raw.len() > 16 * 1024 {
        return None;
    }
    let pem: Vec<u8> = percent_encoding::percent_decode(raw).collect();
    let der = CertificateDer::from_pem_slice(&pem).ok()?;
    Some(ClientCertThumbprint::from_der(der.as_ref()))
}

/// What the `Authorization` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessCredential<'h> {
    /// No `Authorization`, or a scheme other than Bearer and DPoP.
    None,
    /// A token with its scheme.
    Token(Scheme, &'h str),
    /// Several `Authorization` headers, or an empty token: 400
    /// `invalid_request` (RFC 6750 §3.1, RFC 9449 §7.2).
    Malformed(&'static str),
}

/// Reads `Authorization: Bearer <token>` or `DPoP <token>`; the scheme is
/// case-insensitive (RFC 9110 §11.1) and followed by one or more spaces.
pub fn access_credential(headers: &HeaderMap) -> AccessCredential<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return AccessCredential::None;
    };
    if values.next().is_some() {
        return AccessCredential::Malformed("More than one Authorization header");
    }
    let bytes = value.as_bytes();
    let (scheme, rest) = if bytes.len() >= 6 && bytes[..6].eq_ignore_ascii_case(b"bearer") {
        (Scheme::Bearer, &bytes[6..])
    } else if bytes.len() >= 4 && bytes[..4].eq_ignore_ascii_case(b"dpop") {
        (Scheme::Dpop, &bytes[4..])
    } else {
        return AccessCredential::None;
    };
    match rest.first() {
        None => return AccessCredential::Malformed("Empty access token"),
        // e.g. "BearerX …": another scheme.
        Some(b) if *b != b' ' => return AccessCredential::None,
        Some(_) => {}
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return AccessCredential::Malformed("Empty access token");
    }
    match std::str::from_utf8(token) {
        Ok(t) => AccessCredential::Token(scheme, t),
        Err(_) => AccessCredential::Malformed("The access token is not text"),
    }
}

/// The `DPoP` header(s) of a request.
pub fn dpop_proof(headers: &HeaderMap) -> ProofHeader<'_> {
    let mut values = headers.get_all(DPOP).iter();
    match (values.next(), values.next()) {
        (None, _) => ProofHeader::None,
        (Some(v), None) => v.to_str().map_or(ProofHeader::Many, ProofHeader::One),
        (Some(_), Some(_)) => ProofHeader::Many,
    }
}

/// Keeps only the characters RFC 6750 allows in a quoted
/// `error_description`/`scope` (`%x20-21 / %x23-5B / %x5D-7E`).
pub fn quotable(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c == ' ' || c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect()
}

/// The `WWW-Authenticate` value of a resource server's refusal.
///
/// - No credentials (`error` `None`): `Bearer, DPoP algs="…"` — both
///   schemes offered, no error (RFC 6750 §3.1, RFC 9449 §7.1).
/// - An error on a `Bearer` presentation: `Bearer error="…",
///   error_description="…"`, then `DPoP algs="…"` so a client learns DPoP
///   is accepted.
/// - An error on a `DPoP` presentation: `DPoP error="…",
///   error_description="…", algs="…"`.
///
/// `dpop_algs` is the space-separated allow-list; empty leaves DPoP out.
pub fn challenge(presented: Option<Scheme>, error: Option<(&str, &str)>, dpop_algs: &str) -> String {
    let dpop = if dpop_algs.is_empty() {
        String::new()
    } else {
        format!("DPoP algs=\"{}\"", quotable(dpop_algs))
    };
    let with_dpop = |first: String| {
        if dpop.is_empty() {
            first
        } else {
            format!("{first}, {dpop}")
        }
    };
    match (presented, error) {
        (_, None) => with_dpop(String::from("Bearer")),
        (Some(Scheme::Dpop), Some((code, description))) if !dpop.is_empty() => format!(
            "DPoP error=\"{}\", error_description=\"{}\", algs=\"{}\"",
            quotable(code),
            quotable(description),
            quotable(dpop_algs)
        ),
        (_, Some((code, description))) => with_dpop(format!(
            "Bearer error=\"{}\", error_description=\"{}\"",
            quotable(code),
            quotable(description)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn schemes_are_read_case_insensitively() {
        assert_eq!(
            access_credential(&headers(&[("authorization", "Bearer abc")])),
            AccessCredential::Token(Scheme::Bearer, "abc")
        );
        assert_eq!(
            access_credential(&headers(&[("authorization", "dpop   abc ")])),
            AccessCredential::Token(Scheme::Dpop, "abc")
        );
        assert_eq!(
            access_credential(&headers(&[("authorization", "Basic abc")])),
            AccessCredential::None
        );
        assert_eq!(
            access_credential(&headers(&[("authorization", "BearerX abc")])),
            AccessCredential::None
        );
        assert_eq!(access_credential(&headers(&[])), AccessCredential::None);
    }

    #[test]
    fn dp_18_two_authorization_headers_or_no_token_is_a_bad_request() {
        assert!(matches!(
            access_credential(&headers(&[
                ("authorization", "Bearer a"),
                ("authorization", "Bearer b")
            ])),
            AccessCredential::Malformed(_)
        ));
        assert!(matches!(
            access_credential(&headers(&[("authorization", "DPoP ")])),
            AccessCredential::Malformed(_)
        ));
        assert!(matches!(
            access_credential(&headers(&[("authorization", "Bearer")])),
            AccessCredential::Malformed(_)
        ));
    }

    #[test]
    fn dp_01_dpop_headers_are_counted() {
        assert_eq!(dpop_proof(&headers(&[])), ProofHeader::None);
        assert_eq!(
            dpop_proof(&headers(&[("dpop", "a.b.c")])),
            ProofHeader::One("a.b.c")
        );
        assert_eq!(
            dpop_proof(&headers(&[("dpop", "a.b.c"), ("dpop", "d.e.f")])),
            ProofHeader::Many
        );
    }

    #[test]
    fn dp_18_challenges() {
        assert_eq!(
            challenge(None, None, "ES256 EdDSA"),
            r#"Bearer, DPoP algs="ES256 EdDSA""#
        );
        assert_eq!(
            challenge(
                Some(Scheme::Dpop),
                Some(("invalid_token", "Invalid DPoP key binding")),
                "ES256"
            ),
            r#"DPoP error="invalid_token", error_description="Invalid DPoP key binding", algs="ES256""#
        );
        assert_eq!(
            challenge(
                Some(Scheme::Bearer),
                Some(("invalid_token", "bad \"x\"")),
                "ES256"
            ),
            r#"Bearer error="invalid_token", error_description="bad 'x'", DPoP algs="ES256""#
        );
        assert_eq!(challenge(None, None, ""), "Bearer");
    }
}
