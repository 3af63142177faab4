//! Where a token may be used: its audience, named directly (`audience`) or
//! as RFC 8707 resource indicators (`resource`), each allowed for the
//! client and, for a resource, known to the issuer.

use crate::access::Audience;
use crate::clients::Client;

use super::{OAuthError, TokenService};

/// Most audiences one token may name.
pub const MAX_AUDIENCES: usize = 8;

/// RFC 8707 §2: a resource indicator is an absolute URI without a fragment.
/// Returns why it is not one.
pub fn resource_syntax(r: &str) -> Result<(), &'static str> {
    if r.is_empty() || r.len() > 256 || r.chars().any(|c| c.is_control() || c == ' ') {
        return Err("a resource is 1-256 printable characters without spaces");
    }
    let url = url::Url::parse(r).map_err(|_| "a resource must be an absolute URI")?;
    if url.fragment().is_some() || r.contains('#') {
        return Err("a resource must not have a fragment");
    }
    Ok(())
}

impl TokenService {
    /// The audience of a token issued to `client`: the `audience` values,
    /// or the RFC 8707 `resource`s, or the default audience when neither is
    /// given. Least privilege: exactly what was asked for, each allowed for
    /// the client (`invalid_target` otherwise).
    ///
    /// A resource must also be known: registered in `[oauth] resources` or
    /// named explicitly among the client's audiences. A client allowed every
    /// audience (`"*"`) may thus ask for any registered resource, but an
    /// unknown URI is refused even for it, so a typo never yields a token
    /// for a service nobody registered.
    pub fn resolve_target(
        &self,
        client: &Client,
        audience: Option<&Audience>,
        resources: &[String],
    ) -> Result<Vec<String>, OAuthError> {
        let aud = match (audience, resources.is_empty()) {
            (Some(_), false) => {
                return Err(OAuthError::InvalidRequest(
                    "name the token's target as audience or as resource, not both".into(),
                ));
            }
            (Some(a), true) => a.as_slice().to_vec(),
            (None, false) => {
                for r in resources {
                    self.check_resource(client, r)?;
                }
                dedup(resources)
            }
            (None, true) => vec![self.policy.default_audience.clone()],
        };
        if aud.is_empty() || aud.len() > MAX_AUDIENCES {
            return Err(OAuthError::InvalidTarget(format!(
                "between 1 and {MAX_AUDIENCES} audiences"
            )));
        }
        for a in &aud {
            if a.is_empty() || a.len() > 256 || a.chars().any(char::is_control) {
                return Err(OAuthError::InvalidTarget(
                    "audience must be 1-256 printable characters".into(),
                ));
            }
            if !client.allows_audience(a) {
                return Err(OAuthError::InvalidTarget(format!(
                    "audience {a:?} is not allowed for this client"
                )));
            }
        }
        Ok(aud)
    }

    /// A resource indicator `client` may ask for: well formed, known, and
    /// allowed for it.
    pub fn check_resource(&self, client: &Client, r: &str) -> Result<(), OAuthError> {
        resource_syntax(r).map_err(|why| OAuthError::InvalidTarget(why.into()))?;
        let registered =
            self.policy.resources.iter().any(|k| k == r) || client.audiences.iter().any(|a| a == r);
        if !registered {
            return Err(OAuthError::InvalidTarget(format!("unknown resource {r:?}")));
        }
        if !client.allows_audience(r) {
            return Err(OAuthError::InvalidTarget(format!(
                "resource {r:?} is not allowed for this client"
            )));
        }
        Ok(())
    }

    /// RFC 8707 §2.2 on a refresh: the `resource`s narrow the audience the
    /// grant was issued for, never widen it; none keeps it.
    pub(super) fn narrow_audience(
        granted: &[String],
        resources: &[String],
    ) -> Result<Vec<String>, OAuthError> {
        if resources.is_empty() {
            return Ok(granted.to_vec());
        }
        for r in resources {
            resource_syntax(r).map_err(|why| OAuthError::InvalidTarget(why.into()))?;
            if !granted.iter().any(|g| g == r) {
                return Err(OAuthError::InvalidTarget(format!(
                    "resource {r:?} was not granted; a refresh may only narrow the audience"
                )));
            }
        }
        Ok(dedup(resources))
    }
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for s in v {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_is_an_absolute_uri_without_fragment() {
        for ok in [
            "https://api.example.com",
            "https://api.example.com/v1/",
            "urn:example:api",
            "http://rs:8080/x?y=1",
        ] {
            assert_eq!(resource_syntax(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "api",
            "/relative",
            "https://api.example.com/#frag",
            "https://api.example.com#",
            "https://a b",
            "https://x\u{7}",
        ] {
            assert!(resource_syntax(bad).is_err(), "{bad:?} accepted");
        }
    }
}
