//! Server nonces (RFC 9449 §8, §9) without server state: a nonce is the
//! time it was issued, sealed with the deployment's encryption key. Every
//! process sharing that key accepts every other's nonces, and a nonce is
//! fresh while younger than its lifetime. The sealing context names where
//! the nonce was issued, so the token endpoint's nonces are refused at the
//! resource servers and the other way round (checklist DP-12).

use std::sync::Arc;

use crate::b64url;
use crate::seal::Sealer;
use crate::time::Timestamp;

/// Where a nonce is issued and accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceUse {
    /// The token endpoint and session creation (authorization server).
    Token,
    /// Resource servers (`/auth/verify`, the library's verifier).
    Resource,
}

impl NonceUse {
    fn context(self) -> &'static [u8] {
        match self {
            NonceUse::Token => b"tessera dpop nonce: token endpoint",
            NonceUse::Resource => b"tessera dpop nonce: resource server",
        }
    }
}

/// Issues and checks nonces for one [`NonceUse`].
#[derive(Clone)]
pub struct NonceIssuer {
    sealer: Arc<Sealer>,
    usage: NonceUse,
    lifetime_secs: i64,
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("usage", &self.usage)
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl NonceIssuer {
    pub fn new(sealer: Arc<Sealer>, usage: NonceUse, lifetime_secs: i64) -> NonceIssuer {
        NonceIssuer {
            sealer,
            usage,
            lifetime_secs: lifetime_secs.max(1),
        }
    }

    /// A fresh nonce: base64url, so within RFC 9449's `1*NQCHAR`. Random
    /// (the seal's nonce), so unpredictable.
    pub fn issue(&self, now: Timestamp) -> String {
        b64url::encode(
            &self
                .sealer
                .seal(&now.unix_millis().to_be_bytes(), self.usage.context()),
        )
    }

    /// Whether `nonce` was issued for this use by a holder of the key no
    /// longer than the lifetime ago (and not in the future beyond a second
    /// of clock skew between nodes).
    pub fn is_fresh(&self, nonce: &str, now: Timestamp) -> bool {
        let mut buf = [0u8; 64];
        let Some(sealed) = b64url::decode_into(nonce.as_bytes(), &mut buf) else {
            return false;
        };
        let Ok(plain) = self.sealer.open(sealed, self.usage.context()) else {
            return false;
        };
        let Ok(ms) = <[u8; 8]>::try_from(plain.as_slice()).map(i64::from_be_bytes) else {
            return false;
        };
        let age = now.unix_millis().saturating_sub(ms);
        (-1000..=self.lifetime_secs.saturating_mul(1000)).contains(&age)
    }
}
