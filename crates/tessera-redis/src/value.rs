//! Script and command answers to Rust values, failing with
//! [`StoreError::Corrupt`] on any shape the scripts never return.

use redis::Value;
use tessera_core::{StoreError, StoreResult};

use crate::codec::corrupt;

fn shape(what: &str, v: &Value) -> StoreError {
    corrupt(what, format!("unexpected answer {v:?}"))
}

pub(crate) fn int(v: Value, what: &str) -> StoreResult<i64> {
    match v {
        Value::Int(n) => Ok(n),
        Value::BulkString(ref b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| shape(what, &v)),
        v => Err(shape(what, &v)),
    }
}

pub(crate) fn bytes(v: Value, what: &str) -> StoreResult<Vec<u8>> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        v => Err(shape(what, &v)),
    }
}

pub(crate) fn text(v: Value, what: &str) -> StoreResult<String> {
    String::from_utf8(bytes(v, what)?).map_err(|e| corrupt(what, e))
}

pub(crate) fn array(v: Value, what: &str) -> StoreResult<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        v => Err(shape(what, &v)),
    }
}

/// A flat array of alternating items, as pairs.
pub(crate) fn pairs(v: Value, what: &str) -> StoreResult<Vec<(Value, Value)>> {
    match v {
        Value::Map(m) => Ok(m),
        v => {
            let a = array(v, what)?;
            if a.len() % 2 != 0 {
                return Err(corrupt(what, "odd number of items"));
            }
            let mut out = Vec::with_capacity(a.len() / 2);
            let mut it = a.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            Ok(out)
        }
    }
}

/// A hash's or stream entry's field/value pairs, as bytes.
pub(crate) fn field_pairs(v: Value, what: &str) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
    pairs(v, what)?
        .into_iter()
        .map(|(k, v)| Ok((bytes(k, what)?, bytes(v, what)?)))
        .collect()
}
