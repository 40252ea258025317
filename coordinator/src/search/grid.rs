//! W&B's grid: point `i` of the cartesian product, computed from `i` alone (never listed).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::params::{flat_sorted, insert_path, ParamSpec};

/// The `i`-th grid point (0-based), in W&B's order: the cartesian product over parameters
/// sorted by (dotted) name, the last one varying fastest. `None` past the end. Computed from
/// `i` alone: the grid is never listed.
pub fn point(params: &BTreeMap<String, ParamSpec>, i: u64) -> Option<Value> {
    let flat = flat_sorted(params);
    let lens: Vec<u64> = flat
        .iter()
        .map(|(_, s)| s.grid_len().unwrap_or(0))
        .collect();
    if i >= lens.iter().copied().fold(1u64, u64::saturating_mul) {
        return None;
    }
    let mut rem = i;
    let mut picks = vec![0u64; lens.len()];
    for (k, &n) in lens.iter().enumerate().rev() {
        picks[k] = rem % n;
        rem /= n;
    }
    let mut obj = Map::new();
    for ((path, spec), &k) in flat.iter().zip(&picks) {
        insert_path(&mut obj, path, spec.grid_value(k));
    }
    Some(Value::Object(obj))
}
