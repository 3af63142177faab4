//! Parsing the `scope` parameter.

use super::OAuthError;

/// Largest `scope` parameter accepted, and largest single scope token.
const MAX_SCOPE_BYTES: usize = 1024;

/// RFC 6749 §3.3 scope: space-separated `scope-token`s of printable ASCII
/// without `"` or `\`; duplicates dropped, order kept.
pub fn parse_scope(s: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let Some(s) = s else { return Ok(Vec::new()) };
    if s.len() > MAX_SCOPE_BYTES {
        return Err(OAuthError::InvalidScope(format!(
            "scope longer than {MAX_SCOPE_BYTES} bytes"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for tok in s.split(' ').filter(|t| !t.is_empty()) {
        if !tok
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
        {
            return Err(OAuthError::InvalidScope(
                "scope tokens are printable ASCII without quotes or backslashes".into(),
            ));
        }
        if !out.iter().any(|o| o == tok) {
            out.push(tok.to_owned());
        }
    }
    Ok(out)
}
