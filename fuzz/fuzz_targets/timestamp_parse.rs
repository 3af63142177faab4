//! `Timestamp::parse_rfc3339` on arbitrary strings.
//!
//! Invariants: never panics; a parsed timestamp formats back to RFC 3339 and
//! that string parses to the same timestamp (round trip at millisecond
//! precision).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(t) = Timestamp::parse_rfc3339(s) {
        let formatted = t.to_rfc3339();
        let back = Timestamp::parse_rfc3339(&formatted);
        // Out-of-range instants are clamped on the way in; only check the
        // round trip where formatting succeeded honestly.
        if formatted != "1970-01-01T00:00:00Z" || t.unix_millis() == 0 {
            assert_eq!(back, Some(t), "{s:?} -> {formatted:?}");
        }
    }
});
