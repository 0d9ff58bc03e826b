//! JSON from outside, read strictly: an object that names a key twice is
//! refused instead of silently keeping one of the values (which one a
//! reader keeps differs between parsers, so two components could act on
//! two different requests). Nesting depth stays bounded by `serde_json`'s
//! recursion limit (128).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;

/// Parses `bytes` as one JSON value; a repeated object key is an error
/// naming the key. Two passes: one that only looks at keys, then
/// `serde_json`'s own (exact numbers included).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    UniqueKeys::deserialize(&mut deserializer)?;
    deserializer.end()?;
    serde_json::from_slice(bytes)
}

/// A JSON value whose objects never repeat a key; holds nothing.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeys)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_none<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self, D::Error> {
        UniqueKeys::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            keys.insert(key);
            map.next_value::<UniqueKeys>()?;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_serde_json_parses_them() {
        let text = br#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": 18446744073709551615}"#;
        let strict = parse_strict(text).expect("valid");
        let loose: Value = serde_json::from_slice(text).expect("valid");
        assert_eq!(strict, loose);
    }

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        for text in [
            &br#"{"quantity": 2, "x": 0, "quantity": 3}"#[..],
            br#"{"a": {"b": 1, "b": 1}}"#,
            br#"[{"x": 1}, {"y": 1, "y": 2}]"#,
        ] {
            let error = parse_strict(text).expect_err("duplicate");
            assert!(error.to_string().contains("duplicate key \""), "{error}");
        }
        // The same key in sibling objects is fine.
        assert!(parse_strict(br#"[{"x": 1}, {"x": 2}]"#).is_ok());
    }

    #[test]
    fn deep_nesting_and_trailing_bytes_are_errors_not_crashes() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_strict(deep.as_bytes()).is_err());
        assert!(parse_strict(b"{} {}").is_err());
        assert!(parse_strict(br#""\ud800""#).is_err(), "a lone surrogate");
    }
}
