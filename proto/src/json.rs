//! Conversions between the wire's typed [`Value`](crate::pb::Value) and `serde_json::Value`,
//! the domain type both sides use for parameters.

use std::collections::HashMap;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let v = serde_json::json!({"i": 3, "f": 0.5, "s": "adam", "b": true, "l": [1, "x"], "m": {"beta1": 0.9}, "n": null});
        let back = Json::Object(map_to_json(&object_to_pb(&v)));
        assert_eq!(back, v);
    }
}
