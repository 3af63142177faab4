//! At-rest encryption of secrets the store keeps (signing keys): AES-256-GCM.
//!
//! Output layout: `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`. Every seal
//! draws a fresh 96-bit nonce from the OS CSPRNG; with random nonces one key
//! should seal far fewer than 2³² messages, which signing keys (one per
//! rotation) never approach. The AAD binds a ciphertext to its context (for a
//! signing key: its `kid`), so a sealed blob moved to another record does not
//! open.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::secret::fill_random;

/// Length of an AES-256 key.
pub const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Bytes a sealed value adds to its plaintext (nonce and tag).
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Why a sealed value did not open. Deliberately vague: a wrong key, wrong
/// AAD and tampering look the same to AES-GCM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Shorter than a nonce and a tag: not something [`Sealer::seal`] made.
    #[error("sealed value is truncated")]
    Truncated,
    /// Authentication failed: wrong key, wrong AAD, or the bytes were altered.
    #[error("sealed value does not open: wrong key, wrong context, or altered data")]
    Invalid,
    /// An encryption key given as text is not base64url of 32 bytes.
    #[error("encryption key must be base64url (no padding) of 32 bytes")]
    BadKey,
}

/// AES-256-GCM with a random nonce per message. The key never appears in
/// `Debug` output; aws-lc keeps the expanded key and clears it on drop.
pub struct Sealer {
    key: LessSafeKey,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("alg", &"AES-256-GCM")
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Sealer {
    /// A sealer over `key`. The caller owns (and should zeroize) `key`.
    pub fn new(key: &[u8; KEY_LEN]) -> Sealer {
        match UnboundKey::new(&AES_256_GCM, key) {
            Ok(k) => Sealer {
                key: LessSafeKey::new(k),
            },
            // Only a key of the wrong length is refused, and the type rules
            // that out; there is no sealer to fall back to.
            Err(_) => {
                tracing::error!("aws-lc refused a 32-byte AES-256-GCM key");
                std::process::abort();
            }
        }
    }

    /// A sealer from the text form of a key (`[keys] encryption_key`,
    /// base64url without padding, 32 bytes).
    pub fn from_base64url(text: &str) -> Result<Sealer, SealError> {
        let raw = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(text.trim())
                .map_err(|_| SealError::BadKey)?,
        );
        let key: Zeroizing<[u8; KEY_LEN]> =
            Zeroizing::new(raw.as_slice().try_into().map_err(|_| SealError::BadKey)?);
        Ok(Sealer::new(&key))
    }

    /// A fresh random key from the OS CSPRNG. The caller owns it: wrap it in
    /// `zeroize::Zeroizing` or zeroize it when done.
    pub fn generate_key() -> [u8; KEY_LEN] {
        let mut key = [0u8; KEY_LEN];
        fill_random(&mut key);
        key
    }

    /// Encrypts `plaintext`, authenticating `aad` with it.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self.key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        );
        match tag {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                out
            }
            // AES-GCM refuses only messages over ~64 GiB, which cannot be
            // in memory here; never hand back unencrypted bytes.
            Err(_) => {
                tracing::error!(len = plaintext.len(), "AES-256-GCM refused to seal");
                std::process::abort();
            }
        }
    }

    /// Decrypts what [`seal`](Self::seal) produced with the same key and AAD.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < OVERHEAD {
            return Err(SealError::Truncated);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Truncated)?;
        // Decrypt in a buffer that is wiped if authentication fails.
        let mut buf = Zeroizing::new(body.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
            .map_err(|_| SealError::Invalid)?
            .len();
        Ok(buf[..len].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&Sealer::generate_key())
    }

    #[test]
    fn round_trip_and_fresh_nonce_per_seal() {
        let s = sealer();
        for len in [0usize, 1, 15, 16, 17, 48, 1200] {
            let pt: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let a = s.seal(&pt, b"kid-1");
            let b = s.seal(&pt, b"kid-1");
            assert_eq!(a.len(), len + OVERHEAD);
            assert_ne!(a, b, "a fresh nonce per seal");
            assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
            assert_eq!(s.open(&a, b"kid-1").unwrap(), pt);
            assert_eq!(s.open(&b, b"kid-1").unwrap(), pt);
        }
    }

    #[test]
    fn wrong_aad_fails() {
        let s = sealer();
        let c = s.seal(b"secret", b"kid-1");
        assert_eq!(s.open(&c, b"kid-2"), Err(SealError::Invalid));
        assert_eq!(s.open(&c, b""), Err(SealError::Invalid));
    }

    #[test]
    fn wrong_key_fails() {
        let c = sealer().seal(b"secret", b"kid-1");
        assert_eq!(sealer().open(&c, b"kid-1"), Err(SealError::Invalid));
    }

    #[test]
    fn tampering_any_byte_fails() {
        let s = sealer();
        let pt = b"a PKCS#8 document, say";
        let c = s.seal(pt, b"aad");
        // Nonce, ciphertext and tag regions alike: flip each bit of each byte.
        for i in 0..c.len() {
            for bit in 0..8 {
                let mut t = c.clone();
                t[i] ^= 1 << bit;
                assert_eq!(s.open(&t, b"aad"), Err(SealError::Invalid), "byte {i} bit {bit}");
            }
        }
        // Appending a byte shifts the tag: also rejected.
        let mut longer = c.clone();
        longer.push(0);
        assert_eq!(s.open(&longer, b"aad"), Err(SealError::Invalid));
        assert_eq!(s.open(&c, b"aad").unwrap(), pt);
    }

    #[test]
    fn truncation_fails_without_panic() {
        let s = sealer();
        let c = s.seal(b"secret", b"aad");
        for n in 0..c.len() {
            let r = s.open(&c[..n], b"aad");
            if n < OVERHEAD {
                assert_eq!(r, Err(SealError::Truncated), "len {n}");
            } else {
                assert_eq!(r, Err(SealError::Invalid), "len {n}");
            }
        }
        // Dropping bytes from the front (the nonce) fails too.
        assert!(s.open(&c[1..], b"aad").is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = [0x41u8; KEY_LEN];
        let dbg = format!("{:?}", Sealer::new(&key));
        assert!(dbg.contains("redacted"), "{dbg}");
        assert!(
            !dbg.contains("65") && !dbg.contains("AAAA") && !dbg.contains("0x41"),
            "{dbg}"
        );
    }

    #[test]
    fn from_base64url_accepts_32_bytes_only() {
        let key = Sealer::generate_key();
        let text = URL_SAFE_NO_PAD.encode(key);
        let c = Sealer::new(&key).seal(b"x", b"");
        assert_eq!(
            Sealer::from_base64url(&text).unwrap().open(&c, b"").unwrap(),
            b"x"
        );
        assert_eq!(
            Sealer::from_base64url(&URL_SAFE_NO_PAD.encode([0u8; 31])).unwrap_err(),
            SealError::BadKey
        );
        assert_eq!(
            Sealer::from_base64url("not base64!").unwrap_err(),
            SealError::BadKey
        );
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(Sealer::generate_key(), Sealer::generate_key());
    }
}
