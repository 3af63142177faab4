//! Request-body pieces of `POST /v1/sessions` parsed from arbitrary bytes, and
//! RFC 7396 merge patch (`PATCH /v1/sessions/{handle}`) on parsed values.
//!
//! Invariants: deserialisation never panics; merge patch never panics, and
//! applying an object patch leaves an object with no null members that came
//! from the patch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tessera_core::sessions::merge_patch;
use tessera_core::{AuthInput, DeviceInput, TtlInput};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<AuthInput>(data);
    let _ = serde_json::from_slice::<DeviceInput>(data);
    let _ = serde_json::from_slice::<TtlInput>(data);

    // Split the input in two JSON documents: target and patch.
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (left, right) = data.split_at(split);
    let right = right.get(1..).unwrap_or_default();
    let Ok(mut target) = serde_json::from_slice::<Value>(left) else {
        return;
    };
    let patch = serde_json::from_slice::<Value>(right).unwrap_or_else(|_| target.clone());

    merge_patch(&mut target, &patch);
    if let (Value::Object(t), Value::Object(p)) = (&target, &patch) {
        for (k, v) in p {
            if v.is_null() {
                assert!(!t.contains_key(k), "null in a merge patch removes the member");
            }
        }
    } else if !patch.is_object() {
        assert_eq!(target, patch, "a non-object patch replaces the target");
    }
    // Applying the same patch twice is idempotent (RFC 7396).
    let once = target.clone();
    merge_patch(&mut target, &patch);
    assert_eq!(target, once);
});
