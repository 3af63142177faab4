//! Fetching the issuer's JWKS. Importing it (into core's
//! [`KeySet`](tessera_core::access::KeySet), the key source of the shared
//! verifier) is core's.

use std::time::Duration;

use tessera_core::access::KeySet;
use url::Url;

use super::error::JwksError;

/// A JWKS larger than this is refused.
pub(crate) const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Fetches and imports the JWKS at `url` (no redirects, bounded size).
pub(crate) async fn fetch(http: &reqwest::Client, url: &Url, timeout: Duration) -> Result<KeySet, JwksError> {
    let response = http
        .get(url.clone())
        .header(
            reqwest::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| JwksError::Http(e.without_url().to_string()))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(JwksError::Status(response.status().as_u16()));
    }
    let body = read_capped(response, MAX_JWKS_BYTES)
        .await?
        .ok_or(JwksError::TooLarge)?;
    let doc: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| JwksError::Malformed(e.to_string()))?;
    Ok(KeySet::from_jwks(&doc)?)
}

/// Reads a response body, `Ok(None)` when it exceeds `cap` bytes.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Option<Vec<u8>>, JwksError> {
    if response.content_length().is_some_and(|len| len > cap as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| JwksError::Http(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}
