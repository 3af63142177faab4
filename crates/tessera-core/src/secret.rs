//! Opaque secrets and public identifiers.
//!
//! Every secret is 32 bytes from the OS CSPRNG, written as a short type
//! prefix plus unpadded base64url (`tss_…`, `tsk_…`). The store only ever sees
//! the SHA-256 of the secret bytes, so a leaked database yields no usable
//! credential. Parsing checks length and alphabet before anything else, so a
//! 10 KB header or a NUL byte is turned away without decoding or a lookup.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::b64url;

/// Bytes of entropy in every secret token (256 bits).
pub const SECRET_BYTES: usize = 32;
/// Length of the base64url body of a secret token.
pub const SECRET_CHARS: usize = 43;
/// Bytes of randomness in a public identifier such as a session handle.
pub const ID_BYTES: usize = 16;
/// Length of the base64url body of a public identifier.
pub const ID_CHARS: usize = 22;

/// The kinds of secret Tessera issues; the prefix tells them apart at a glance
/// (and lets secret scanners find them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A session token, the cookie value.
    Session,
    /// A backend API key.
    ApiKey,
    /// A refresh token.
    Refresh,
}

impl TokenKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Session => "tss_",
            TokenKind::ApiKey => "tsk_",
            TokenKind::Refresh => "tsr_",
        }
    }

    /// Total length of a well-formed token of this kind.
    pub const fn encoded_len(self) -> usize {
        self.prefix().len() + SECRET_CHARS
    }
}

/// SHA-256 of a token's secret bytes: what stores keep and index.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

/// The value is already a uniformly distributed digest of a 256-bit secret
/// that only the server chooses, so eight of its bytes are as good a hash
/// input as all 32 and a third of the work for the hasher on every lookup.
impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

impl TokenHash {
    pub fn of_secret(secret: &[u8]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(Self)
    }

    /// Constant-time equality, for the final check after a lookup by hash.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        // aws-lc's CRYPTO_memcmp: constant time, and cheaper than `subtle`'s
        // byte-wise loop with its optimisation barrier per byte.
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }

    /// A short, non-reversible tag for logs: the first 8 hex digits of the
    /// hash (itself a hash of a 256-bit secret), never the token.
    pub fn log_tag(&self) -> String {
        self.0[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", self.log_tag())
    }
}

/// A freshly issued secret. Its `Debug` never shows the value, so it cannot
/// leak through a stray `{:?}` in a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken {
    value: String,
    hash: TokenHash,
}

impl SecretToken {
    /// Draws a new secret of `kind` from the OS CSPRNG.
    pub fn generate(kind: TokenKind) -> Self {
        let mut secret = [0u8; SECRET_BYTES];
        fill_random(&mut secret);
        let mut value = String::with_capacity(kind.encoded_len());
        value.push_str(kind.prefix());
        URL_SAFE_NO_PAD.encode_string(secret, &mut value);
        let hash = TokenHash::of_secret(&secret);
        secret.fill(0);
        Self { value, hash }
    }

    /// Rebuilds a token from its text and the hash [`parse`] computed for it
    /// (a sealed token read back from the store).
    pub fn from_parts(value: String, hash: TokenHash) -> Self {
        Self { value, hash }
    }

    /// The token as handed to its holder.
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn hash(&self) -> TokenHash {
        self.hash
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretToken(<redacted {}>)", self.hash.log_tag())
    }
}

/// Why a presented token was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedToken {
    #[error("token has the wrong length")]
    Length,
    #[error("token has the wrong prefix")]
    Prefix,
    #[error("token contains characters outside base64url")]
    Alphabet,
    #[error("token is not canonical base64url")]
    Encoding,
}

/// Checks the shape of a presented token and returns the hash to look up.
///
/// The checks run cheapest first: length, prefix, alphabet, then a strict
/// decode that refuses non-canonical trailing bits (so no two strings map to
/// the same secret).
pub fn parse(kind: TokenKind, presented: &[u8]) -> Result<TokenHash, MalformedToken> {
    if presented.len() != kind.encoded_len() {
        return Err(MalformedToken::Length);
    }
    let (prefix, body) = presented.split_at(kind.prefix().len());
    if prefix != kind.prefix().as_bytes() {
        return Err(MalformedToken::Prefix);
    }
    if !body.iter().all(|&b| b64url::is_alphabet(b)) {
        return Err(MalformedToken::Alphabet);
    }
    let mut secret = [0u8; SECRET_BYTES];
    if b64url::decode_into(body, &mut secret).map(<[u8]>::len) != Some(SECRET_BYTES) {
        return Err(MalformedToken::Encoding);
    }
    let hash = TokenHash::of_secret(&secret);
    secret.fill(0);
    Ok(hash)
}

/// A new public identifier such as `ses_…`: random, so it encodes neither the
/// subject nor a time, but not a secret either.
pub fn new_id(prefix: &str) -> String {
    let mut raw = [0u8; ID_BYTES];
    fill_random(&mut raw);
    let mut out = String::with_capacity(prefix.len() + ID_CHARS);
    out.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(raw, &mut out);
    out
}

/// Whether `s` has the shape of an identifier made by [`new_id`] with `prefix`.
pub fn is_id(prefix: &str, s: &str) -> bool {
    s.len() == prefix.len() + ID_CHARS
        && s.starts_with(prefix)
        && s.as_bytes()[prefix.len()..]
            .iter()
            .all(|&b| b64url::is_alphabet(b))
}

pub const SESSION_HANDLE_PREFIX: &str = "ses_";
pub const API_KEY_ID_PREFIX: &str = "key_";

/// Fills `buf` from the OS CSPRNG.
///
/// If the OS cannot give randomness there is no safe way to go on issuing
/// credentials, so this aborts the process rather than return weak bytes.
pub fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        tracing::error!(error = %e, "the OS CSPRNG failed; refusing to issue credentials");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests;
