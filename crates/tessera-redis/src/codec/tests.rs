use serde_json::json;
use tessera_core::secret::new_id;
use tessera_core::{Binding, SecretToken, TokenKind};

use super::*;

fn record() -> SessionRecord {
    let t0 = Timestamp::from_unix_millis(1_767_225_600_123);
    SessionRecord {
        handle: new_id(SESSION_HANDLE_PREFIX),
        token_hash: SecretToken::generate(TokenKind::Session).hash(),
        subject: "user-1".into(),
        version: 3,
        created_at: t0,
        last_seen_at: t0.plus_millis(5),
        idle_timeout_ms: 1_800_000,
        idle_expires_at: t0.plus_millis(1_800_005),
        absolute_expires_at: t0.plus_millis(28_800_000),
        auth: AuthInfo {
            level: 1,
            methods: vec!["pwd".into()],
            time: t0.plus_millis(-7),
        },
        device: DeviceInfo {
            user_agent: None,
            ip: None,
            label: UNKNOWN_DEVICE.into(),
        },
        data: match json!({"theme": "dark"}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        },
        binding: None,
        revoked: None,
    }
}

#[test]
fn session_round_trips() {
    let mut r = record();
    let b = encode_session(&r).unwrap();
    assert_eq!(decode_session(r.handle.clone(), &b).unwrap(), r);
    r.revoked = Some(Revocation {
        at: r.created_at.plus_millis(-3),
        reason: RevokeReason::Operator,
    });
    r.binding = Some(Binding::Dpop { jkt: "x".into() });
    r.device.label = "Firefox on Linux".into();
    r.data = Map::new();
    r.idle_expires_at = r.created_at.plus_millis(9);
    let b = encode_session(&r).unwrap();
    assert_eq!(decode_session(r.handle.clone(), &b).unwrap(), r);
}

/// The figure the memory budget rests on: a plain session's record fits
/// the 96-byte allocation class (92 bytes of value).
#[test]
fn a_plain_session_is_small() {
    let b = encode_session(&record()).unwrap();
    assert!(b.len() <= 92, "{} bytes", b.len());
}

#[test]
fn numbers_beyond_the_scripts_precision_are_refused() {
    let mut r = record();
    r.version = 1 << 53;
    assert!(matches!(encode_session(&r), Err(StoreError::Unavailable(_))));
    let mut r = record();
    r.absolute_expires_at = Timestamp::from_unix_millis(i64::MAX);
    assert!(matches!(encode_session(&r), Err(StoreError::Unavailable(_))));
}

#[test]
fn garbage_is_corrupt_not_a_panic() {
    let good = encode_session(&record()).unwrap();
    for cut in 0..good.len() {
        let r = decode_session("h".into(), &good[..cut]);
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "cut at {cut}: {r:?}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        decode_session("h".into(), &longer),
        Err(StoreError::Corrupt(_))
    ));
    let mut other_format = good;
    other_format[0] = 9;
    assert!(matches!(
        decode_session("h".into(), &other_format),
        Err(StoreError::Corrupt(_))
    ));
    for bytes in [&b""[..], b"\x01", b"\x02abc", b"\xff\xff"] {
        assert!(unpack_handle(bytes).is_err() || bytes[0] == TAG_RAW);
        let _ = decode_family("f".into(), &[(b"b".to_vec(), bytes.to_vec())]);
        let _ = decode_signing_key("k".into(), &[(b"b".to_vec(), bytes.to_vec())]);
        let _ = decode_api_key("a".into(), &[(b"b".to_vec(), bytes.to_vec())]);
    }
    assert!(decode_event("0-x", &[]).is_err());
    assert!(decode_event("0-1", &[(b"t".to_vec(), b"1".to_vec())]).is_err());
}

#[test]
fn handles_pack_small_and_keep_their_order() {
    let mut handles: Vec<String> = (0..200).map(|_| new_id(SESSION_HANDLE_PREFIX)).collect();
    handles.extend(["ses_nonexistent".to_owned(), "x".to_owned(), String::new()]);
    for h in &handles {
        let p = pack_handle(h);
        assert_eq!(&unpack_handle(&p).unwrap(), h);
        if h.len() == 26 {
            assert_eq!(p.len(), PACKED_LEN);
        }
    }
    let ids: Vec<&String> = handles.iter().filter(|h| h.len() == 26).collect();
    for a in &ids {
        for b in &ids {
            assert_eq!(a.cmp(b), pack_handle(a).cmp(&pack_handle(b)), "{a} vs {b}");
        }
    }
    // Every character of the alphabet survives, in every position.
    let all: String = ID_ALPHABET.iter().map(|&c| char::from(c)).collect();
    for start in 0..64 {
        let body: String = all.chars().cycle().skip(start).take(ID_CHARS).collect();
        let h = format!("{SESSION_HANDLE_PREFIX}{body}");
        assert_eq!(unpack_handle(&pack_handle(&h)).unwrap(), h);
    }
}

#[test]
fn codes_round_trip() {
    for r in RevokeReason::ALL {
        assert_eq!(reason_from(reason_code(r)).unwrap(), r);
    }
    for k in EventKind::ALL {
        assert_eq!(kind_from(kind_code(k)).unwrap(), k);
    }
}
