//! Reading the `ext` claim: a JSON object whose keys appear once and whose values are
//! scalars. serde_json's own map would keep the last of two equal keys without a word, and
//! a token with duplicate keys must be invalid however deep they are.

use std::fmt;

use serde::de::{Deserializer, Error, MapAccess, Visitor};
use serde_json::Value;

use crate::claims::Ext;

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ext>, D::Error> {
    d.deserialize_option(OptionalExt)
}

struct OptionalExt;

impl<'de> Visitor<'de> for OptionalExt {
    type Value = Option<Ext>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of scalar claims")
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(ScalarMap).map(Some)
    }
}

struct ScalarMap;

impl<'de> Visitor<'de> for ScalarMap {
    type Value = Ext;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of scalar claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ext, A::Error> {
        let mut ext = Ext::new();
        while let Some(name) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                return Err(A::Error::custom("ext claims must be scalars"));
            }
            if ext.insert(name, value).is_some() {
                return Err(A::Error::custom("duplicate ext claim"));
            }
        }
        Ok(ext)
    }
}
