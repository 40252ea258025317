//! Conversions between the wire's typed [`Value`](crate::pb::Value) and `serde_json::Value`,
//! the domain type both sides use for parameters.

use std::collections::HashMap;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Number, Value as Json};

use crate::pb::{value::Kind, Value, ValueList, ValueMap};

/// A JSON value on the wire. Integers stay integers; `null` travels as an empty value.
pub fn to_pb(v: &Json) -> Value {
    let kind = match v {
        Json::Null => None,
        Json::Bool(b) => Some(Kind::Bool(*b)),
        Json::Number(n) => Some(match n.as_i64() {
            Some(i) => Kind::Int(i),
            None => Kind::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Json::String(s) => Some(Kind::Str(s.clone())),
        Json::Array(a) => Some(Kind::List(ValueList {
            items: a.iter().map(to_pb).collect(),
        })),
        Json::Object(m) => Some(Kind::Map(ValueMap {
            entries: m.iter().map(|(k, v)| (k.clone(), to_pb(v))).collect(),
        })),
    };
    Value { kind }
}

/// A wire value as JSON (a non-finite float becomes `null`).
pub fn to_json(v: &Value) -> Json {
    match &v.kind {
        None => Json::Null,
        Some(Kind::Int(i)) => Json::from(*i),
        Some(Kind::Float(f)) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Some(Kind::Str(s)) => Json::String(s.clone()),
        Some(Kind::Bool(b)) => Json::Bool(*b),
        Some(Kind::List(l)) => Json::Array(l.items.iter().map(to_json).collect()),
        Some(Kind::Map(m)) => Json::Object(map_to_json(&m.entries)),
    }
}

/// A JSON object as a wire map (anything else gives an empty map).
pub fn object_to_pb(v: &Json) -> HashMap<String, Value> {
    match v {
        Json::Object(m) => m.iter().map(|(k, v)| (k.clone(), to_pb(v))).collect(),
        _ => HashMap::new(),
    }
}

/// A wire map as a JSON object (keys sorted).
pub fn map_to_json(m: &HashMap<String, Value>) -> Map<String, Json> {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| (k.clone(), to_json(&m[k])))
        .collect()
}

/// A wire value written as JSON directly, without building a `serde_json::Value` first
/// (what [`to_json`] gives, byte for byte once written).
#[derive(Debug)]
pub struct AsJson<'a>(pub &'a Value);

impl Serialize for AsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0.kind {
            None => s.serialize_unit(),
            Some(Kind::Int(i)) => s.serialize_i64(*i),
            // Like `to_json`: a non-finite float is `null`.
            Some(Kind::Float(f)) if !f.is_finite() => s.serialize_unit(),
            Some(Kind::Float(f)) => s.serialize_f64(*f),
            Some(Kind::Str(v)) => s.serialize_str(v),
            Some(Kind::Bool(b)) => s.serialize_bool(*b),
            Some(Kind::List(l)) => {
                let mut seq = s.serialize_seq(Some(l.items.len()))?;
                for v in &l.items {
                    seq.serialize_element(&AsJson(v))?;
                }
                seq.end()
            }
            Some(Kind::Map(m)) => MapAsJson(&m.entries).serialize(s),
        }
    }
}

/// A wire map written as a JSON object with its keys sorted (what [`map_to_json`] gives).
#[derive(Debug)]
pub struct MapAsJson<'a>(pub &'a HashMap<String, Value>);

impl Serialize for MapAsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut keys: Vec<&String> = self.0.keys().collect();
        keys.sort();
        let mut map = s.serialize_map(Some(keys.len()))?;
        for k in keys {
            map.serialize_entry(k, &AsJson(&self.0[k]))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let v = serde_json::json!({"i": 3, "f": 0.5, "s": "adam", "b": true, "l": [1, "x"], "m": {"beta1": 0.9}, "n": null});
        let back = Json::Object(map_to_json(&object_to_pb(&v)));
        assert_eq!(back, v);
    }

    #[test]
    fn written_directly_is_the_same_text_as_through_a_json_value() {
        let v = serde_json::json!({"i": -3, "u": 7, "f": 0.1, "big": 1e300, "s": "a\"b", "b": false,
            "l": [1, "x", [2.5, null]], "m": {"z": 1, "a": {"beta1": 0.9}}, "n": null});
        let pb = object_to_pb(&v);
        let direct = serde_json::to_string(&MapAsJson(&pb)).unwrap();
        let through = serde_json::to_string(&Json::Object(map_to_json(&pb))).unwrap();
        assert_eq!(direct, through);
        let nan = Value {
            kind: Some(Kind::Float(f64::NAN)),
        };
        assert_eq!(serde_json::to_string(&AsJson(&nan)).unwrap(), "null");
    }
}
