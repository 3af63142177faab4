use super::*;

#[test]
fn labels_common_browsers() {
    let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
    assert_eq!(device_label(Some(chrome)), "Chrome on Linux");
    let firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0";
    assert_eq!(device_label(Some(firefox)), "Firefox on Windows 10");
    assert_eq!(device_label(None), "Unknown device");
    assert_eq!(device_label(Some("curl/8.5.0")), "HTTP Library");
    assert_eq!(device_label(Some("\u{1}\u{2}")), "Unknown device");
}

#[test]
fn reasons_and_kinds_round_trip() {
    for r in RevokeReason::ALL {
        assert_eq!(r.as_str().parse::<RevokeReason>(), Ok(r));
        assert_eq!(serde_json::to_value(r).unwrap(), Value::from(r.as_str()));
    }
    for k in EventKind::ALL {
        assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
        assert_eq!(serde_json::to_value(k).unwrap(), Value::from(k.as_str()));
    }
}
