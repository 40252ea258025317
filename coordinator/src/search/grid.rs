//! W&B's grid: point `i` of the cartesian product, computed from `i` alone (never listed).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::params::{flat_sorted, insert_path, number, Distribution, ParamSpec};

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
        insert_path(&mut obj, path, value(spec, k));
    }
    Some(Value::Object(obj))
}

/// Grid point `k` (0-based, `k < grid_len()`) of this (flat) parameter.
fn value(spec: &ParamSpec, k: u64) -> Value {
    match spec {
        ParamSpec::Constant(v) => v.clone(),
        ParamSpec::Values { values, .. } => values[k as usize].clone(),
        ParamSpec::Dist {
            dist: Distribution::IntUniform,
            min,
            ..
        } => Value::from((*min as i64).saturating_add(k as i64)),
        ParamSpec::Dist {
            dist: Distribution::QUniform,
            min,
            q,
            grid_int,
            ..
        } => {
            // numpy's `arange` fills `min + k·delta` with `delta = (min + q) - min`, the
            // step as it comes out in floating point (9.517, not 9.517000000000001).
            let delta = (min + q) - min;
            number(min + k as f64 * delta, *grid_int)
        }
        // No grid (refused by `check_grid` before any point is asked for).
        ParamSpec::Dist { .. } | ParamSpec::Nested(_) => Value::Null,
    }
}
