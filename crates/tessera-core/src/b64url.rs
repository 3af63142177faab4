//! The one base64url decoder for presented tokens (session, refresh and API
//! tokens, access-token segments).
//!
//! `base64`'s `URL_SAFE_NO_PAD` engine as configured there: the URL-safe
//! alphabet only, padding refused, and non-canonical trailing bits refused,
//! so no two strings decode to the same bytes (a denylist or cache keyed on
//! the text cannot be dodged by re-encoding, checklist EX-06) and the form
//! checks elsewhere never disagree with the decoder about what is base64url.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decodes `input` into `buf` and returns the decoded bytes; `None` when the
/// input is not canonical unpadded base64url or does not fit. Never
/// allocates.
#[inline]
pub fn decode_into<'b>(input: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let n = URL_SAFE_NO_PAD.decode_slice(input, buf).ok()?;
    buf.get(..n)
}

/// Encodes `bytes` as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `s` is base64url of exactly 32 bytes: the shape of a SHA-256
/// thumbprint (`cnf.jkt`, `cnf.x5t#S256`).
pub fn is_sha256_digest(s: &str) -> bool {
    let mut buf = [0u8; 35];
    decode_into(s.as_bytes(), &mut buf).is_some_and(|d| d.len() == 32)
}

/// Whether `b` is in the base64url alphabet (`A–Z a–z 0–9 - _`).
#[inline]
pub fn is_alphabet(b: u8) -> bool {
    // A table: every presented token goes through this byte by byte.
    static TABLE: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let b = i as u8;
            t[i] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            i += 1;
        }
        t
    };
    TABLE[usize::from(b)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ex_06_one_text_per_byte_string() {
        let mut buf = [0u8; 8];
        assert_eq!(decode_into(b"AQID", &mut buf), Some(&[1u8, 2, 3][..]));
        assert_eq!(decode_into(b"AQI", &mut buf), Some(&[1u8, 2][..]));
        // Padding, whitespace, the standard alphabet, a non-zero trailing
        // bit ("AQJ" would be 01 02 + 1 stray bit), an impossible length.
        for bad in [&b"AQI="[..], b"AQ I", b"AQ+/", b"AQJ", b"A", b"AQID\n"] {
            assert_eq!(decode_into(bad, &mut buf), None, "{bad:?}");
        }
        // Too small a buffer is a refusal, not a panic.
        assert_eq!(decode_into(b"AQIDBAUG", &mut [0u8; 5]), None);
    }

    #[test]
    fn alphabet_is_exactly_base64url() {
        let accepted: Vec<u8> = (0..=255u8).filter(|b| is_alphabet(*b)).collect();
        let expected: Vec<u8> = (b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .chain(b'0'..=b'9')
            .chain([b'-', b'_'])
            .collect::<std::collections::BTreeSet<u8>>()
            .into_iter()
            .collect();
        assert_eq!(accepted, expected);
    }
}
