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
