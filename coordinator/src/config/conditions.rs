//! Conditional parameters: `when:` beside a parameter's distribution makes it active only when
//! other parameters have given values (docs/CONFIG.md "Conditional parameters"):
//!
//! ```yaml
//! parameters:
//!   optimizer: {values: [sgd, momentum, nag, adam, nadam]}
//!   momentum:  {values: [0.8, 0.9], when: {optimizer: [momentum, nag]}}
//!   beta1:     {min: 0.8, max: 0.99, when: {optimizer: [adam, nadam]}}
//!   num_layers: {values: [1, 2, 3]}
//!   size_3:    {values: [32, 64], when: {num_layers: {min: 3}}}
//! ```
//!
//! A condition names a parameter (its dotted path) and what it must be: one value, a list of
//! values (one of them), or `{min, max}` (a number within, both inclusive, either optional).
//! Several conditions must all hold, and a parameter whose condition names an inactive one is
//! inactive too. An inactive parameter is not in the trial's parameters at all: not in the
//! program's argv or `wandb.config`, not in the leaderboard or exports. `when` is our key; a
//! config without it means what it meant.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::params::{flat_sorted, ParamSpec};
use super::{show, ConfigError};

/// Most conditions one sweep may hold.
pub const MAX_CONDITIONS: usize = 1024;

/// What a parameter named by a condition must be.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Test {
    /// One of these values (a single value is a list of one).
    OneOf(Vec<Value>),
    /// A number within [min, max] (either bound may be absent).
    Range {
        /// Lower bound, inclusive.
        min: Option<f64>,
        /// Upper bound, inclusive.
        max: Option<f64>,
    },
}

impl Test {
    fn holds(&self, v: &Value) -> bool {
        match self {
            Test::OneOf(values) => values.iter().any(|w| same(w, v)),
            Test::Range { min, max } => v
                .as_f64()
                .is_some_and(|x| min.is_none_or(|m| x >= m) && max.is_none_or(|m| x <= m)),
        }
    }
}

/// Values equal as a config means them (`3` and `3.0` are one value).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The conditions of a sweep: for each conditional parameter (dotted path), what other
/// parameters (dotted paths) must be. Ordered so that a parameter comes after those it names.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conditions {
    order: Vec<(String, Vec<(String, Test)>)>,
    /// Where the valid points of the sweep's grid are (made once, when first asked).
    #[serde(skip)]
    marks: Marks,
}

/// Most combinations a grid with conditional parameters may have before its conditions are
/// applied (the grid is walked once to find its valid points).
pub const MAX_CONDITIONAL_GRID: u64 = 1_000_000;

/// Valid grid points between two marks.
const MARK_EVERY: u64 = 1024;

/// The valid points of a conditional grid: combination index of valid point
/// `k · MARK_EVERY` for each k, and how many there are. Derived from the spec, so not part of
/// what makes two specs equal.
#[derive(Debug, Clone, Default)]
struct Marks(std::sync::OnceLock<(Vec<u64>, u64)>);

impl PartialEq for Marks {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Combination `c` of the grid's cartesian product (W&B's order: the last parameter varying
/// fastest), with every parameter, and the index each parameter takes.
fn combination(flat: &[(Vec<String>, &ParamSpec)], c: u64) -> (Value, Vec<u64>) {
    let mut rem = c;
    let mut picks = vec![0u64; flat.len()];
    for (k, (_, spec)) in flat.iter().enumerate().rev() {
        let n = spec.grid_len().unwrap_or(1).max(1);
        picks[k] = rem % n;
        rem /= n;
    }
    let mut obj = Map::new();
    for ((path, spec), &k) in flat.iter().zip(&picks) {
        super::params::insert_path(&mut obj, path, spec.grid_value(k));
    }
    (Value::Object(obj), picks)
}

impl Conditions {
    /// Whether the sweep has none.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The conditional parameters' dotted paths.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|(p, _)| p.as_str())
    }

    /// Which conditional parameters are inactive in `params` (a full draw: every parameter
    /// has a value), as dotted paths.
    pub fn inactive(&self, params: &Value) -> BTreeSet<String> {
        let mut off = BTreeSet::new();
        for (path, tests) in &self.order {
            let active = tests
                .iter()
                .all(|(on, t)| !off.contains(on) && get(params, on).is_some_and(|v| t.holds(v)));
            if !active {
                off.insert(path.clone());
            }
        }
        off
    }

    /// The grid's valid point of combination `c`, if it is one: a combination whose inactive
    /// parameters all sit at their first value (so each assignment of the active ones comes
    /// once, at the place of its first combination), without them.
    fn valid(&self, flat: &[(Vec<String>, &ParamSpec)], c: u64) -> Option<Value> {
        let (full, picks) = combination(flat, c);
        let off = self.inactive(&full);
        let parked = flat
            .iter()
            .zip(&picks)
            .all(|((path, _), &k)| k == 0 || !off.contains(&path.join(".")));
        parked.then(|| self.prune(full))
    }

    fn marks(&self, params: &BTreeMap<String, ParamSpec>) -> &(Vec<u64>, u64) {
        self.marks.0.get_or_init(|| {
            let flat = flat_sorted(params);
            let total = super::params::grid_size(params).min(MAX_CONDITIONAL_GRID);
            let (mut marks, mut count) = (Vec::new(), 0u64);
            for c in 0..total {
                if self.valid(&flat, c).is_some() {
                    if count % MARK_EVERY == 0 {
                        marks.push(c);
                    }
                    count += 1;
                }
            }
            (marks, count)
        })
    }

    /// How many points the grid of `params` has under these conditions.
    pub fn grid_count(&self, params: &BTreeMap<String, ParamSpec>) -> u64 {
        self.marks(params).1
    }

    /// Valid grid point `i` (0-based) of `params`, its inactive parameters left out; `None`
    /// past the end. W&B's order, skipping the combinations that differ only in inactive
    /// parameters.
    pub fn grid_point(&self, params: &BTreeMap<String, ParamSpec>, i: u64) -> Option<Value> {
        let (marks, count) = self.marks(params);
        if i >= *count {
            return None;
        }
        let flat = flat_sorted(params);
        let mut c = marks[(i / MARK_EVERY) as usize];
        let mut k = i / MARK_EVERY * MARK_EVERY;
        loop {
            if let Some(p) = self.valid(&flat, c) {
                if k == i {
                    return Some(p);
                }
                k += 1;
            }
            c += 1;
        }
    }

    /// `params` (a trial's, inactive parameters left out) with every conditional parameter it
    /// lacks set to a fixed stand-in: its first value, or its low end (`mu` for the normal
    /// family), so that models over every parameter can take the trial.
    pub fn fill(&self, params: &BTreeMap<String, ParamSpec>, trial: &Value) -> Value {
        let mut out = trial.clone();
        let flat: BTreeMap<String, (Vec<String>, &ParamSpec)> = flat_sorted(params)
            .into_iter()
            .map(|(p, s)| (p.join("."), (p, s)))
            .collect();
        let Value::Object(obj) = &mut out else {
            return out;
        };
        for (path, _) in &self.order {
            if get(trial, path).is_some() {
                continue;
            }
            let Some((parts, spec)) = flat.get(path) else {
                continue;
            };
            let stand_in = match spec {
                ParamSpec::Dist {
                    dist, min, mu, int, ..
                } => {
                    use super::params::Distribution::*;
                    let x = match dist {
                        Normal | QNormal => *mu,
                        LogNormal | QLogNormal => mu.exp(),
                        LogUniform | QLogUniform => min.exp(),
                        InvLogUniform => (-min).exp(),
                        _ => *min,
                    };
                    super::params::number(x, *int)
                }
                s => s.grid_value(0),
            };
            super::params::insert_path(obj, parts, stand_in);
        }
        out
    }

    /// `params` without its inactive parameters (a group left empty goes too).
    pub fn prune(&self, mut params: Value) -> Value {
        if self.is_empty() {
            return params;
        }
        for path in self.inactive(&params) {
            remove(&mut params, &path);
        }
        params
    }
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn remove(v: &mut Value, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    fn go(v: &mut Value, parts: &[&str]) {
        let Value::Object(m) = v else { return };
        match parts {
            [last] => {
                m.remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(inner) = m.get_mut(*first) {
                    go(inner, rest);
                    if inner.as_object().is_some_and(Map::is_empty) {
                        m.remove(*first);
                    }
                }
            }
            [] => {}
        }
    }
    go(v, &parts);
}

/// Takes every `when:` out of a raw `parameters` mapping (at any depth), as
/// (dotted path of its parameter, its value), so that the rest parses as W&B's schema.
pub fn extract(parameters: &mut Value) -> Vec<(String, Value)> {
    fn go(m: &mut Value, prefix: &str, out: &mut Vec<(String, Value)>) {
        let Value::Object(m) = m else { return };
        for (name, spec) in m.iter_mut() {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let Value::Object(s) = spec else { continue };
            if let Some(w) = s.remove("when") {
                out.push((path.clone(), w));
            }
            if let Some(inner) = s.get_mut("parameters") {
                go(inner, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    go(parameters, "", &mut out);
    out
}

/// Checks the conditions taken out by [`extract`] against the parsed parameters: each names a
/// parameter that exists and is not the one it conditions, lists values that parameter can
/// take, and no chain of conditions goes round. Errors name the parameter and the condition
/// (`parameters.momentum.when.optimizer`).
pub fn parse(
    raw: Vec<(String, Value)>,
    params: &BTreeMap<String, ParamSpec>,
) -> Result<Conditions, ConfigError> {
    if raw.len() > MAX_CONDITIONS {
        return Err(ConfigError::new(
            "parameters",
            format!(
                "{} conditional parameters; at most {MAX_CONDITIONS}",
                raw.len()
            ),
        ));
    }
    let flat: BTreeMap<String, &ParamSpec> = flat_sorted(params)
        .into_iter()
        .map(|(p, s)| (p.join("."), s))
        .collect();
    let mut tests: BTreeMap<String, Vec<(String, Test)>> = BTreeMap::new();
    for (path, w) in raw {
        let at = format!("parameters.{path}.when");
        if !flat.contains_key(&path) {
            return Err(ConfigError::new(
                at,
                "a condition belongs on a parameter (value, values or a distribution), not on a group",
            ));
        }
        let Value::Object(w) = w else {
            return Err(ConfigError::new(
                at,
                format!("expected a mapping of parameter names to what they must be, e.g. {{optimizer: [adam, nadam]}}, got {}", show(&w)),
            ));
        };
        if w.is_empty() {
            return Err(ConfigError::new(
                at,
                "empty; name at least one parameter, e.g. {optimizer: adam}",
            ));
        }
        let mut list = Vec::new();
        for (on, want) in w {
            let here = format!("{at}.{on}");
            if on == path {
                return Err(ConfigError::new(
                    here,
                    "a parameter cannot depend on itself",
                ));
            }
            let Some(spec) = flat.get(&on) else {
                let names: Vec<&str> = flat.keys().map(String::as_str).collect();
                return Err(ConfigError::new(
                    here,
                    format!("no parameter {on:?}; the sweep has {}", names.join(", ")),
                ));
            };
            list.push((on.clone(), test(&want, spec, &here)?));
        }
        tests.insert(path, list);
    }
    // Order: a parameter after the conditional ones it names; a cycle is an error.
    let mut order = Vec::with_capacity(tests.len());
    let mut placed: BTreeSet<String> = BTreeSet::new();
    while placed.len() < tests.len() {
        let ready: Vec<String> = tests
            .iter()
            .filter(|(p, ts)| {
                !placed.contains(*p)
                    && ts
                        .iter()
                        .all(|(on, _)| !tests.contains_key(on) || placed.contains(on))
            })
            .map(|(p, _)| p.clone())
            .collect();
        if ready.is_empty() {
            let left: Vec<&str> = tests
                .keys()
                .filter(|p| !placed.contains(*p))
                .map(String::as_str)
                .collect();
            return Err(ConfigError::new(
                format!("parameters.{}.when", left[0]),
                format!(
                    "the conditions of {} go round (each waits for another); one of them must not depend on the others",
                    left.join(", ")
                ),
            ));
        }
        for p in ready {
            placed.insert(p.clone());
            let ts = tests[&p].clone();
            order.push((p, ts));
        }
    }
    Ok(Conditions {
        order,
        marks: Marks::default(),
    })
}

/// What a condition's value means, checked against the parameter it names.
fn test(want: &Value, spec: &ParamSpec, at: &str) -> Result<Test, ConfigError> {
    let possible: Option<Vec<&Value>> = match spec {
        ParamSpec::Constant(v) => Some(vec![v]),
        ParamSpec::Values { values, .. } => Some(values.iter().collect()),
        _ => None,
    };
    let t = match want {
        Value::Object(m) => {
            for k in m.keys() {
                if k != "min" && k != "max" {
                    return Err(ConfigError::new(
                        format!("{at}.{k}"),
                        "unknown key; a range condition has min and/or max",
                    ));
                }
            }
            let bound = |k: &str| -> Result<Option<f64>, ConfigError> {
                match m.get(k) {
                    None => Ok(None),
                    Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                        ConfigError::new(
                            format!("{at}.{k}"),
                            format!("expected a number, got {}", show(v)),
                        )
                    }),
                }
            };
            let (min, max) = (bound("min")?, bound("max")?);
            if min.is_none() && max.is_none() {
                return Err(ConfigError::new(
                    at,
                    "a range condition needs min or max, e.g. {min: 2}",
                ));
            }
            Test::Range { min, max }
        }
        Value::Array(values) if values.is_empty() => {
            return Err(ConfigError::new(
                at,
                "an empty list: the parameter could never be active",
            ))
        }
        Value::Array(values) => Test::OneOf(values.clone()),
        v => Test::OneOf(vec![v.clone()]),
    };
    if let (Test::OneOf(values), Some(possible)) = (&t, &possible) {
        if let Some(bad) = values.iter().find(|v| !possible.iter().any(|p| same(p, v))) {
            return Err(ConfigError::new(
                at,
                format!(
                    "{} is not one of the values that parameter takes ({})",
                    show(bad),
                    possible
                        .iter()
                        .map(|p| show(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::params::parse_parameters;
    use serde_json::json;

    fn conds(p: Value) -> Result<(BTreeMap<String, ParamSpec>, Conditions), ConfigError> {
        let mut p = p;
        let raw = extract(&mut p);
        let params = parse_parameters(&p, "parameters")?;
        let c = parse(raw, &params)?;
        Ok((params, c))
    }

    fn space() -> Value {
        json!({
            "optimizer": {"values": ["sgd", "momentum", "adam"]},
            "momentum": {"values": [0.8, 0.9], "when": {"optimizer": ["momentum"]}},
            "beta1": {"min": 0.8, "max": 0.99, "when": {"optimizer": "adam"}},
            "layers": {"values": [1, 2, 3]},
            "size_3": {"values": [32, 64], "when": {"layers": {"min": 3}}},
            "nesterov": {"values": [true, false], "when": {"momentum": 0.9}},
        })
    }

    #[test]
    fn inactive_parameters_and_those_that_depend_on_them_are_pruned() {
        let (_, c) = conds(space()).unwrap();
        let full = json!({"optimizer": "adam", "momentum": 0.9, "beta1": 0.9, "layers": 3,
                          "size_3": 64, "nesterov": true});
        // momentum is inactive, so nesterov (which names it) is too, though momentum is 0.9.
        assert_eq!(
            c.prune(full),
            json!({"optimizer": "adam", "beta1": 0.9, "layers": 3, "size_3": 64})
        );
        let full = json!({"optimizer": "momentum", "momentum": 0.9, "beta1": 0.9, "layers": 2,
                          "size_3": 64, "nesterov": false});
        assert_eq!(
            c.prune(full),
            json!({"optimizer": "momentum", "momentum": 0.9, "layers": 2, "nesterov": false})
        );
    }

    #[test]
    fn conditions_are_checked_and_errors_name_the_parameter_and_the_condition() {
        let bad = |p: Value| conds(p).unwrap_err();
        let e = bad(json!({"a": {"values": [1, 2]}, "b": {"value": 1, "when": {"c": 1}}}));
        assert_eq!(e.path, "parameters.b.when.c");
        assert!(e.message.contains("no parameter \"c\""), "{}", e.message);
        let e = bad(
            json!({"opt": {"values": ["sgd", "adam"]}, "m": {"value": 1, "when": {"opt": ["adamw"]}}}),
        );
        assert_eq!(e.path, "parameters.m.when.opt");
        assert!(
            e.message.contains("\"adamw\" is not one of"),
            "{}",
            e.message
        );
        let e = bad(
            json!({"a": {"values": [1, 2], "when": {"b": 1}}, "b": {"values": [1, 2], "when": {"a": 1}}}),
        );
        assert!(e.message.contains("go round"), "{}", e.message);
        let e = bad(json!({"a": {"values": [1, 2], "when": {"a": 1}}}));
        assert!(e.message.contains("itself"), "{}", e.message);
        let e =
            bad(json!({"a": {"values": [1, 2]}, "b": {"value": 1, "when": {"a": {"above": 1}}}}));
        assert_eq!(e.path, "parameters.b.when.a.above");
        let e = bad(json!({"a": {"values": [1, 2]}, "b": {"value": 1, "when": "a"}}));
        assert_eq!(e.path, "parameters.b.when");
        // Nested parameters are named by their dotted path.
        let (_, c) = conds(
            json!({"opt": {"parameters": {"name": {"values": ["adam", "sgd"]},
            "beta1": {"value": 0.9, "when": {"opt.name": "adam"}}}}}),
        )
        .unwrap();
        assert_eq!(
            c.prune(json!({"opt": {"name": "sgd", "beta1": 0.9}})),
            json!({"opt": {"name": "sgd"}})
        );
    }
}
