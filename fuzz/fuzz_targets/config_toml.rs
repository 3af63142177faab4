//! The service's configuration: `Config::from_toml` (the file), then the
//! `TESSERA_*` environment overlay (`Config::apply_env`) and
//! `Config::validate`, as `tessera` loads it at startup.
//!
//! Input: TOML text, then after a NUL byte `NAME=VALUE` lines for the
//! environment (a line starting with `#N=` names the N-th known variable,
//! so the fuzzer reaches every key without guessing names).
//!
//! Invariants: never panics; a configuration that parses serializes to
//! TOML that parses back to the same configuration, and a password in its
//! store URL is masked when shown; an environment variable that names a key is never
//! refused as unknown, one that names none always is; the environment only
//! ever changes what it names (an empty overlay changes nothing).
#![no_main]

use std::ffi::OsString;

use libfuzzer_sys::fuzz_target;
use tessera_server::config::{Config, ConfigError, env_names, mask_url_password};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (file, env) = data.split_at(split);
    let Ok(file) = std::str::from_utf8(file) else {
        return;
    };
    let env = std::str::from_utf8(env.get(1..).unwrap_or_default()).unwrap_or_default();
    let Ok(cfg) = Config::from_toml(file) else {
        return;
    };

    let text = toml::to_string(&cfg).expect("a parsed configuration serializes");
    assert_eq!(Config::from_toml(&text).as_ref(), Ok(&cfg), "{text}");
    // What `tessera config` prints: a password in the store URL never shows.
    let url = cfg.store_url();
    let masked = mask_url_password(&url);
    if let Some((_, rest)) = url.split_once("://")
        && let Some((userinfo, _)) = rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())].rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
        && !password.is_empty()
    {
        assert!(masked.contains(":****@"), "{url:?} -> {masked:?}");
    }
    let _ = cfg.validate();
    // Past the store check even without a store compiled in.
    if cfg.store.is_none() {
        let mut mem = cfg.clone();
        mem.store = Some("memory://".into());
        let _ = mem.validate();
    }

    let known: Vec<&str> = env_names().collect();
    let vars: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = match k.strip_prefix('#').and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => known[n % known.len()].to_owned(),
                None => k.to_owned(),
            };
            (k, v.to_owned())
        })
        .collect();
    let mut overlaid = cfg.clone();
    let os: Vec<(OsString, OsString)> = vars.iter().map(|(k, v)| (k.into(), v.into())).collect();
    match overlaid.apply_env(os) {
        Ok(()) => {
            for (k, _) in &vars {
                assert!(
                    !k.starts_with("TESSERA_") || known.contains(&k.as_str()) || is_non_key(k),
                    "{k}"
                );
            }
            if !vars.iter().any(|(k, _)| k.starts_with("TESSERA_")) {
                assert_eq!(overlaid, cfg);
            }
            let _ = overlaid.validate();
        }
        Err(ConfigError::Env { name, message }) => {
            assert!(vars.iter().any(|(k, _)| *k == name));
            let unknown = message.starts_with("not a configuration key");
            assert_eq!(unknown, !known.contains(&name.as_str()), "{name}: {message}");
        }
        Err(e) => panic!("apply_env answered {e}"),
    }
});

fn is_non_key(name: &str) -> bool {
    tessera_server::config::NON_KEY_ENV.contains(&name)
}
