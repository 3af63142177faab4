use super::*;

#[test]
fn issuer_paths() {
    assert_eq!(issuer_path("https://h"), "");
    assert_eq!(issuer_path("https://h:8443/t1"), "/t1");
    assert_eq!(issuer_path("http://127.0.0.1:8080"), "");
    assert_eq!(issuer_path("https://h/a/b"), "/a/b");
}

/// The default key file lies in the data directory, beside the
/// database; a file elsewhere or a key from the configuration does not.
#[test]
fn key_file_beside_the_data_is_detected() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let base = Config {
        data_dir: data.path().to_owned(),
        ..Config::default()
    };
    assert_eq!(
        key_file_beside_data(&base),
        Some(data.path().canonicalize().unwrap()),
        "the default <data_dir>/key-encryption-key"
    );
    let mut c = base.clone();
    c.keys.encryption_key_file = Some(data.path().join("keys/kek"));
    assert!(key_file_beside_data(&c).is_some(), "a subdirectory is inside too");
    let mut c = base.clone();
    c.keys.encryption_key_file = Some(elsewhere.path().join("kek"));
    assert_eq!(key_file_beside_data(&c), None);
    // The database elsewhere, the key file next to it.
    let mut c = base.clone();
    c.store = Some(format!("sqlite://{}", elsewhere.path().join("t.db").display()));
    c.keys.encryption_key_file = Some(elsewhere.path().join("kek"));
    assert_eq!(
        key_file_beside_data(&c),
        Some(elsewhere.path().canonicalize().unwrap())
    );
    let mut c = base;
    c.keys.encryption_key = Some("A".repeat(43));
    assert_eq!(key_file_beside_data(&c), None, "no file at all");
}

#[test]
fn key_file_is_generated_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        store: Some("memory://".into()),
        ..Config::default()
    };
    assert!(load_sealer(&config, false).is_err(), "no file, no create");
    let a = load_sealer(&config, true).unwrap();
    let path = dir.path().join("key-encryption-key");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n') && text.trim_end().len() == 43, "{text:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The same key on the next start: what one seals the other opens.
    let b = load_sealer(&config, true).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "not rewritten");
    let sealed = a.seal(b"x", b"kid");
    assert_eq!(b.open(&sealed, b"kid").unwrap(), b"x");
}
