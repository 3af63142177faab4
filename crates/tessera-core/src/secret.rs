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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn sc_01_tokens_are_256_bit_unique_and_unbiased() {
        let n = 10_000;
        let mut seen = HashSet::with_capacity(n);
        let mut ones = [0u32; SECRET_BYTES * 8];
        for _ in 0..n {
            let t = SecretToken::generate(TokenKind::Session);
            assert_eq!(t.expose().len(), TokenKind::Session.encoded_len());
            let raw = URL_SAFE_NO_PAD
                .decode(&t.expose()[4..])
                .expect("issued tokens decode");
            assert_eq!(raw.len(), 32, "256 bits of secret");
            for (i, bit) in raw
                .iter()
                .flat_map(|b| (0..8).map(move |k| (b >> k) & 1))
                .enumerate()
            {
                ones[i] += u32::from(bit);
            }
            assert!(seen.insert(t.expose().to_owned()), "duplicate token");
        }
        // Chi-square over 256 bit positions, each a fair coin over n draws.
        // With 256 degrees of freedom the 0.9999 quantile is about 340.
        let expected = f64::from(n as u32) / 2.0;
        let chi2: f64 = ones
            .iter()
            .map(|&o| {
                let d = f64::from(o) - expected;
                2.0 * d * d / expected
            })
            .sum();
        assert!(chi2 < 340.0, "bit frequencies look biased: chi2 = {chi2}");
    }

    /// SC-02: a session token carries nothing but randomness — not the
    /// subject, not the time, not the handle — as issued by the real path
    /// (`Sessions::create`), for one subject at one frozen instant.
    #[tokio::test]
    async fn sc_02_token_is_opaque() {
        use std::sync::Arc;

        use crate::{CreateSession, ManualClock, MemoryStore, SessionPolicy, Sessions, Timestamp};

        fn holds(haystack: &[u8], needle: &[u8]) -> bool {
            !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
        }

        let now = Timestamp::from_unix_millis(1_800_000_123_456);
        let sessions = Sessions::new(
            Arc::new(MemoryStore::new()),
            Arc::new(ManualClock::new(now)),
            SessionPolicy {
                max_sessions_per_subject: None,
                ..SessionPolicy::default()
            },
        );
        let subject = "alice@example.com";
        let (secs, millis) = (now.unix_secs(), now.unix_millis());
        // The instant as a token might embed it: 32-bit seconds, 48/64-bit
        // milliseconds, either byte order, or as decimal text.
        let time_bytes: Vec<Vec<u8>> = vec![
            (secs as u32).to_be_bytes().to_vec(),
            (secs as u32).to_le_bytes().to_vec(),
            millis.to_be_bytes()[2..].to_vec(),
            millis.to_le_bytes()[..6].to_vec(),
            secs.to_string().into_bytes(),
        ];
        let n = 64;
        let mut raws: Vec<Vec<u8>> = Vec::with_capacity(n);
        for _ in 0..n {
            let issued = sessions
                .create(CreateSession {
                    subject: subject.into(),
                    ..CreateSession::default()
                })
                .await
                .unwrap();
            let text = issued.token.expose();
            let body = text.strip_prefix("tss_").unwrap();
            assert!(body.bytes().all(b64url::is_alphabet));
            assert!(!text.contains(subject) && !text.contains("alice"), "{text}");
            assert!(!text.contains(&secs.to_string()[..6]), "the time shows in {text}");
            let raw = URL_SAFE_NO_PAD.decode(body).unwrap();
            assert_eq!(raw.len(), SECRET_BYTES);
            assert!(!holds(&raw, subject.as_bytes()) && !holds(&raw, b"alice"));
            for t in &time_bytes {
                assert!(!holds(&raw, t), "the token's bytes hold the time {t:02x?}");
            }
            // Nor the handle, which is public.
            let handle = URL_SAFE_NO_PAD
                .decode(issued.session.handle.strip_prefix("ses_").unwrap())
                .unwrap();
            assert!(!holds(&raw, &handle[..8]) && !holds(&raw, &handle[8..]));
            assert!(!raws.contains(&raw), "two tokens alike");
            raws.push(raw);
        }
        // Same subject, same instant: no byte position is fixed or nearly
        // so, as any embedded field (subject hash, time, counter, shard)
        // would make it. 64 uniform bytes show ~57 distinct values; fewer
        // than 24 has probability far below 1e-20.
        for pos in 0..SECRET_BYTES {
            let distinct: HashSet<u8> = raws.iter().map(|r| r[pos]).collect();
            assert!(
                distinct.len() >= 24,
                "byte {pos} takes only {} values over {n} tokens",
                distinct.len()
            );
        }
    }

    #[test]
    fn parse_accepts_issued_and_matches_hash() {
        let t = SecretToken::generate(TokenKind::Session);
        assert_eq!(parse(TokenKind::Session, t.expose().as_bytes()), Ok(t.hash()));
        assert_eq!(
            parse(TokenKind::ApiKey, t.expose().as_bytes()),
            Err(MalformedToken::Prefix)
        );
    }

    #[test]
    fn sc_13_malformed_tokens_are_refused_before_lookup() {
        let t = SecretToken::generate(TokenKind::Session);
        let mut nul = t.expose().as_bytes().to_vec();
        nul[10] = 0;
        let mut last = t.expose().as_bytes().to_vec();
        // 43 chars carry 258 bits; a set low bit in the last char is non-canonical.
        let l = last.len() - 1;
        last[l] = if last[l] == b'B' { b'C' } else { b'B' };
        let cases: Vec<Vec<u8>> = vec![
            vec![b'a'; 10 * 1024],
            nul,
            b"' OR 1=1--".to_vec(),
            vec![0xff; TokenKind::Session.encoded_len()],
            format!("tss_{}", "=".repeat(43)).into_bytes(),
            Vec::new(),
        ];
        for c in cases {
            assert!(parse(TokenKind::Session, &c).is_err());
        }
        // The non-canonical variant is either refused or is a different secret.
        if let Ok(h) = parse(TokenKind::Session, &last) {
            assert_ne!(h, t.hash());
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = SecretToken::generate(TokenKind::Session);
        let dbg = format!("{t:?}");
        assert!(!dbg.contains(&t.expose()[4..]));
    }

    #[test]
    fn ids_have_their_shape() {
        let h = new_id(SESSION_HANDLE_PREFIX);
        assert!(is_id(SESSION_HANDLE_PREFIX, &h));
        assert!(!is_id(SESSION_HANDLE_PREFIX, "ses_../../etc/passwd"));
        assert!(!is_id(SESSION_HANDLE_PREFIX, &format!("{h}x")));
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(TokenKind::Session, &input);
        }

        #[test]
        fn parse_accepts_only_its_own_shape(body in "[A-Za-z0-9_-]{43}") {
            let s = format!("tss_{body}");
            if let Ok(h) = parse(TokenKind::Session, s.as_bytes()) {
                // Accepted tokens round-trip: re-encoding the secret gives the same string.
                let raw = URL_SAFE_NO_PAD.decode(&body).unwrap();
                prop_assert_eq!(h, TokenHash::of_secret(&raw));
                prop_assert_eq!(URL_SAFE_NO_PAD.encode(&raw), body);
            }
        }
    }
}
