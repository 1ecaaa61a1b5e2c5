//! Duplicate JSON keys, at any depth, make a token invalid (RFC 8725 3.8 asks verifiers to
//! refuse what two parsers could read two ways). serde refuses a known claim given twice,
//! but skips unknown claims without looking, so the whole payload is walked once here.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// True when `json` is a JSON document in which no object repeats a key.
pub(super) fn keys_are_distinct(json: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(json);
    Walk.deserialize(&mut de).is_ok() && de.end().is_ok()
}

/// Walks one value, failing on the first object that repeats a key.
#[derive(Clone, Copy)]
struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON without duplicate keys")
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            map.next_value_seed(self)?;
            keys.push(key);
        }
        keys.sort_unstable();
        if keys.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(A::Error::custom("duplicate key"));
        }
        Ok(())
    }
}

/// An object key as decoded (escapes resolved, so `"a"` and `"\u0061"` are one key),
/// borrowed from the input when it holds no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::keys_are_distinct;

    #[test]
    fn documents_without_repeated_keys_pass() {
        for json in [
            r#"{}"#,
            r#"{"a":1,"b":{"a":1},"c":[{"a":1},{"a":2}]}"#,
            r#"{"sub":"o1","x":[1,"s",true,null,1.5]}"#,
            r#"[1,2]"#,
        ] {
            assert!(keys_are_distinct(json.as_bytes()), "{json}");
        }
    }

    #[test]
    fn a_key_repeated_at_any_depth_fails() {
        for json in [
            r#"{"a":1,"a":1}"#,
            r#"{"x":{"k":1,"k":2}}"#,
            r#"{"x":[{"k":1,"k":2}]}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"unknown":1,"unknown":2}"#,
        ] {
            assert!(!keys_are_distinct(json.as_bytes()), "{json}");
        }
    }

    #[test]
    fn trailing_bytes_and_broken_json_fail() {
        for json in [r#"{"a":1} x"#, r#"{"a":"#, ""] {
            assert!(!keys_are_distinct(json.as_bytes()), "{json}");
        }
    }
}
