//! Parameter specifications (W&B's `parameters:` block): parsing and the checks made at submit
//! (a grid's size is counted here; its points and random draws are `crate::search`'s).

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use super::{kind, show, ConfigError};

/// A continuous or integer distribution (W&B's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Distribution {
    /// `U(min, max)`.
    Uniform,
    /// Integers `min..=max`.
    IntUniform,
    /// `round(U(min, max) / q) · q`; on a grid, `min, min + q, …` below `max`.
    QUniform,
    /// `exp(U(min, max))`.
    LogUniform,
    /// `exp(U(ln min, ln max))`.
    LogUniformValues,
    /// `round(exp(U(min, max)) / q) · q`.
    QLogUniform,
    /// `round(exp(U(ln min, ln max)) / q) · q`.
    QLogUniformValues,
    /// `exp(−U(min, max))`.
    InvLogUniform,
    /// `1 / exp(U(ln(1/max), ln(1/min)))`.
    InvLogUniformValues,
    /// `N(mu, sigma)`.
    Normal,
    /// `round(N(mu, sigma) / q) · q`.
    QNormal,
    /// `exp(N(mu, sigma))`.
    LogNormal,
    /// `round(exp(N(mu, sigma)) / q) · q`.
    QLogNormal,
    /// `Beta(a, b)`.
    Beta,
    /// `round(Beta(a, b) / q) · q`.
    QBeta,
}

impl Distribution {
    fn from_name(s: &str) -> Option<Self> {
        use Distribution::*;
        Some(match s {
            "uniform" => Uniform,
            "int_uniform" => IntUniform,
            "q_uniform" => QUniform,
            "log_uniform" => LogUniform,
            "log_uniform_values" => LogUniformValues,
            "q_log_uniform" => QLogUniform,
            "q_log_uniform_values" => QLogUniformValues,
            "inv_log_uniform" => InvLogUniform,
            "inv_log_uniform_values" => InvLogUniformValues,
            "normal" => Normal,
            "q_normal" => QNormal,
            "log_normal" => LogNormal,
            "q_log_normal" => QLogNormal,
            "beta" => Beta,
            "q_beta" => QBeta,
            _ => return None,
        })
    }

    fn bounded(self) -> bool {
        use Distribution::*;
        matches!(
            self,
            Uniform
                | IntUniform
                | QUniform
                | LogUniform
                | LogUniformValues
                | QLogUniform
                | QLogUniformValues
                | InvLogUniform
                | InvLogUniformValues
        )
    }

    fn quantized(self) -> bool {
        use Distribution::*;
        matches!(
            self,
            QUniform | QLogUniform | QLogUniformValues | QNormal | QLogNormal | QBeta
        )
    }
}

const NAMES: &str = "constant, categorical, uniform, int_uniform, q_uniform, log_uniform, log_uniform_values, q_log_uniform, q_log_uniform_values, inv_log_uniform, inv_log_uniform_values, normal, q_normal, log_normal, q_log_normal, beta, q_beta";

/// One parameter.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ParamSpec {
    /// `value: X` (or `distribution: constant`).
    Constant(Value),
    /// `values: [...]` with optional `probabilities` (or `distribution: categorical`).
    Values {
        /// The choices, in order.
        values: Vec<Value>,
        /// Probability of each choice (random search); uniform when absent.
        probabilities: Option<Vec<f64>>,
    },
    /// A distribution.
    Dist {
        /// Which one.
        dist: Distribution,
        /// Lower bound (bounded distributions).
        min: f64,
        /// Upper bound (bounded distributions).
        max: f64,
        /// Quantum (`q_*`), default 1.
        q: f64,
        /// Mean (normal family), default 0.
        mu: f64,
        /// Standard deviation (normal family), default 1.
        sigma: f64,
        /// Beta's a, default 1.
        a: f64,
        /// Beta's b, default 1.
        b: f64,
        /// Whether draws are integers: `int_uniform`, or a quantized distribution whose `q` is
        /// written as an integer (W&B's rule: `q: 1` gives ints, `q: 1.0` or no `q` floats).
        int: bool,
        /// Whether `q_uniform`'s grid points are integers (numpy's `arange` of integer
        /// `min`, `max` and `q`).
        grid_int: bool,
    },
    /// `parameters: {...}`: a nested group.
    Nested(BTreeMap<String, ParamSpec>),
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

/// Parses a `parameters:` mapping.
pub fn parse_parameters(v: &Value, path: &str) -> Result<BTreeMap<String, ParamSpec>, ConfigError> {
    let Value::Object(m) = v else {
        return Err(ConfigError::new(
            path,
            format!("expected a mapping of parameter names, got {}", kind(v)),
        ));
    };
    // Every parameter is checked; their errors come together.
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, spec) in m {
        let p = format!("{path}.{name}");
        if !valid_name(name) {
            errors.push(ConfigError::new(
                p,
                "a parameter name starts with a letter or _ and holds only letters, digits, _ . -",
            ));
            continue;
        }
        match parse_param(spec, &p) {
            Ok(ps) => {
                out.insert(name.clone(), ps);
            }
            Err(e) => errors.push(e),
        }
    }
    match ConfigError::all(errors) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn num(m: &Map<String, Value>, k: &str, path: &str) -> Result<Option<f64>, ConfigError> {
    match m.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| {
                // `1e-4` is text to PyYAML, which W&B reads configs with: say how to write it.
                let hint = match v.as_str() {
                    Some(t) if t.parse::<f64>().is_ok() => {
                        " (YAML as W&B reads it takes 1e-4 as text: write 1.0e-4 or 0.0001)"
                    }
                    _ => "",
                };
                ConfigError::new(
                    format!("{path}.{k}"),
                    format!("expected a number, got {}{hint}", show(v)),
                )
            }),
    }
}

fn is_int(v: Option<&Value>) -> bool {
    v.is_some_and(|v| v.is_i64() || v.is_u64())
}

fn parse_param(v: &Value, path: &str) -> Result<ParamSpec, ConfigError> {
    let Value::Object(m) = v else {
        return Err(ConfigError::new(
            path,
            format!("expected a mapping such as {{value: X}}, {{values: [...]}} or {{distribution, min, max}}, got {}", kind(v)),
        ));
    };
    const KEYS: &[&str] = &[
        "distribution",
        "value",
        "values",
        "probabilities",
        "min",
        "max",
        "q",
        "mu",
        "sigma",
        "a",
        "b",
        "parameters",
        "description",
    ];
    for k in m.keys() {
        if !KEYS.contains(&k.as_str()) {
            return Err(ConfigError::new(
                format!("{path}.{k}"),
                format!("unknown key; expected one of {}", KEYS.join(", ")),
            ));
        }
    }
    if let Some(nested) = m.get("parameters") {
        if m.keys().any(|k| k != "parameters" && k != "description") {
            return Err(ConfigError::new(
                path,
                "a nested group holds only `parameters`",
            ));
        }
        return Ok(ParamSpec::Nested(parse_parameters(
            nested,
            &format!("{path}.parameters"),
        )?));
    }
    let dist = match m.get("distribution") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(ConfigError::new(
                format!("{path}.distribution"),
                format!("expected a string, got {}", show(v)),
            ))
        }
        None => {
            if m.contains_key("value") {
                "constant".into()
            } else if m.contains_key("values") {
                "categorical".into()
            } else if m.contains_key("min") || m.contains_key("max") {
                if is_int(m.get("min")) && is_int(m.get("max")) {
                    "int_uniform".into()
                } else {
                    "uniform".into()
                }
            } else {
                return Err(ConfigError::new(
                    path,
                    "expected value, values, min/max, or a distribution",
                ));
            }
        }
    };
    match dist.as_str() {
        "constant" => {
            let v = m.get("value").ok_or_else(|| {
                ConfigError::new(format!("{path}.value"), "missing for a constant")
            })?;
            Ok(ParamSpec::Constant(v.clone()))
        }
        // W&B's schema also names a list with probabilities this way.
        "categorical" | "categorical_w_probabilities" => {
            let values = match m.get("values") {
                Some(Value::Array(a)) if !a.is_empty() => a.clone(),
                Some(Value::Array(_)) => {
                    return Err(ConfigError::new(
                        format!("{path}.values"),
                        "expected a non-empty list",
                    ))
                }
                Some(v) => {
                    return Err(ConfigError::new(
                        format!("{path}.values"),
                        format!("expected a list, got {}", kind(v)),
                    ))
                }
                None => {
                    return Err(ConfigError::new(
                        format!("{path}.values"),
                        "missing for a categorical parameter",
                    ))
                }
            };
            let probabilities = match m.get("probabilities") {
                None => None,
                Some(Value::Array(ps)) => {
                    if ps.len() != values.len() {
                        return Err(ConfigError::new(
                            format!("{path}.probabilities"),
                            format!("has {} entries but values has {}", ps.len(), values.len()),
                        ));
                    }
                    let ps: Vec<f64> = ps
                        .iter()
                        .map(|p| p.as_f64().filter(|x| *x >= 0.0 && x.is_finite()))
                        .collect::<Option<_>>()
                        .ok_or_else(|| {
                            ConfigError::new(
                                format!("{path}.probabilities"),
                                "expected numbers ≥ 0",
                            )
                        })?;
                    let sum: f64 = ps.iter().sum();
                    if (sum - 1.0).abs() > 1e-6 {
                        return Err(ConfigError::new(
                            format!("{path}.probabilities"),
                            format!("{ps:?} do not sum to 1 (sum {sum})"),
                        ));
                    }
                    Some(ps)
                }
                Some(v) => {
                    return Err(ConfigError::new(
                        format!("{path}.probabilities"),
                        format!("expected a list, got {}", kind(v)),
                    ))
                }
            };
            Ok(ParamSpec::Values {
                values,
                probabilities,
            })
        }
        name => {
            let d = Distribution::from_name(name).ok_or_else(|| {
                ConfigError::new(
                    format!("{path}.distribution"),
                    format!("expected one of {NAMES}, got {name:?}"),
                )
            })?;
            let q = num(m, "q", path)?.unwrap_or(1.0);
            if q <= 0.0 {
                return Err(ConfigError::new(
                    format!("{path}.q"),
                    format!("expected a number > 0, got {q}"),
                ));
            }
            let (mut min, mut max) = (0.0, 0.0);
            if d.bounded() {
                min = num(m, "min", path)?.ok_or_else(|| {
                    ConfigError::new(format!("{path}.min"), format!("missing for {name}"))
                })?;
                max = num(m, "max", path)?.ok_or_else(|| {
                    ConfigError::new(format!("{path}.max"), format!("missing for {name}"))
                })?;
                if d == Distribution::IntUniform && !(is_int(m.get("min")) && is_int(m.get("max")))
                {
                    return Err(ConfigError::new(
                        path,
                        format!("int_uniform needs integer min and max, got {min} and {max}"),
                    ));
                }
                if min >= max {
                    return Err(ConfigError::new(
                        format!("{path}.min"),
                        format!("min {min} is not less than max {max}"),
                    ));
                }
                if matches!(
                    d,
                    Distribution::LogUniformValues
                        | Distribution::QLogUniformValues
                        | Distribution::InvLogUniformValues
                ) && min <= 0.0
                {
                    return Err(ConfigError::new(
                        format!("{path}.min"),
                        format!("{name} needs min > 0, got {min}"),
                    ));
                }
            }
            let mu = num(m, "mu", path)?.unwrap_or(0.0);
            let sigma = num(m, "sigma", path)?.unwrap_or(1.0);
            if sigma <= 0.0 {
                return Err(ConfigError::new(
                    format!("{path}.sigma"),
                    format!("expected a number > 0, got {sigma}"),
                ));
            }
            let a = num(m, "a", path)?.unwrap_or(1.0);
            let b = num(m, "b", path)?.unwrap_or(1.0);
            if a <= 0.0 || b <= 0.0 {
                return Err(ConfigError::new(
                    path,
                    format!("beta needs a > 0 and b > 0, got {a} and {b}"),
                ));
            }
            let int = d == Distribution::IntUniform || (d.quantized() && is_int(m.get("q")));
            let grid_int = q.fract() == 0.0 && min.fract() == 0.0 && max.fract() == 0.0;
            Ok(ParamSpec::Dist {
                dist: d,
                min,
                max,
                q,
                mu,
                sigma,
                a,
                b,
                int,
                grid_int,
            })
        }
    }
}

impl ParamSpec {
    /// The values a user wrote explicitly (for checks against the trainer): the constant, the
    /// listed values, or a distribution's bounds.
    pub fn listed_values(&self) -> Vec<&Value> {
        match self {
            ParamSpec::Constant(v) => vec![v],
            ParamSpec::Values { values, .. } => values.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// How many grid points this (flat) parameter has, or `None` if it has no grid.
    /// Counted, never listed: a range of 10¹² integers costs nothing until a point is asked for.
    /// Grid point `k` (0-based, `k < grid_len()`) of this (flat) parameter.
    pub(crate) fn grid_value(&self, k: u64) -> Value {
        match self {
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

    pub(crate) fn grid_len(&self) -> Option<u64> {
        match self {
            ParamSpec::Constant(_) => Some(1),
            ParamSpec::Values { values, .. } => Some(values.len() as u64),
            ParamSpec::Dist {
                dist: Distribution::IntUniform,
                min,
                max,
                ..
            } => Some(if max >= min {
                (*max as i64).abs_diff(*min as i64).saturating_add(1)
            } else {
                0
            }),
            ParamSpec::Dist {
                dist: Distribution::QUniform,
                min,
                max,
                q,
                ..
            } => {
                // numpy.arange(min, max, q): max excluded.
                let n = ((max - min) / q).ceil().max(0.0);
                Some(if n.is_finite() && n < 1.8e19 {
                    n as u64
                } else {
                    u64::MAX
                })
            }
            _ => None,
        }
    }
}

/// Most points a grid may have: a larger grid would never finish (use `method: random` with
/// `run_cap`). Points are computed one at a time, so per-call work does not grow with it.
pub const MAX_GRID_POINTS: u64 = 100_000_000;

/// A JSON number, as an integer when `int` and the value is integral.
pub(crate) fn number(x: f64, int: bool) -> Value {
    if int && x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

/// Parameters flattened to (path, spec), sorted by dotted name: W&B's grid order.
fn flatten<'a>(
    params: &'a BTreeMap<String, ParamSpec>,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, &'a ParamSpec)>,
) {
    for (name, spec) in params {
        let mut path = prefix.to_vec();
        path.push(name.clone());
        match spec {
            ParamSpec::Nested(inner) => flatten(inner, &path, out),
            other => out.push((path, other)),
        }
    }
}

/// The largest value a parameter can take, where it is bounded and numeric (for the size
/// limits checked at submit).
pub(crate) fn upper_bound(spec: &ParamSpec) -> Option<f64> {
    use Distribution::*;
    match spec {
        ParamSpec::Constant(v) => v.as_f64(),
        ParamSpec::Values { values, .. } => values
            .iter()
            .filter_map(Value::as_f64)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
        ParamSpec::Dist { dist, min, max, .. } => match dist {
            Uniform | IntUniform | QUniform | LogUniformValues | QLogUniformValues
            | InvLogUniformValues => Some(*max),
            LogUniform | QLogUniform => Some(max.exp()),
            InvLogUniform => Some((-min).exp()),
            Beta | QBeta => Some(1.0),
            Normal | QNormal | LogNormal | QLogNormal => None,
        },
        ParamSpec::Nested(_) => None,
    }
}

/// Leaf parameters in W&B's order: depth first, each level sorted by name (so a group `a`'s
/// parameters come before a parameter `a-x`, as in W&B, though `a.b` sorts after `a-x`).
pub(crate) fn flat_sorted(params: &BTreeMap<String, ParamSpec>) -> Vec<(Vec<String>, &ParamSpec)> {
    let mut flat = Vec::new();
    flatten(params, &[], &mut flat);
    flat
}

/// W&B's grid takes each distinct value of a list once: `[a, b, c, a]` is three points, at the
/// place of the first and with the last of equal values (`3000000` and `3000000.0` are one
/// value, mappings equal up to key order are one). Applied to `method: grid` only: random
/// search draws duplicates more often, as W&B's does.
pub fn dedupe_for_grid(params: &mut BTreeMap<String, ParamSpec>) {
    for spec in params.values_mut() {
        match spec {
            ParamSpec::Nested(inner) => dedupe_for_grid(inner),
            ParamSpec::Values { values, .. } => {
                let mut at: std::collections::HashMap<String, usize> = Default::default();
                let mut out: Vec<Value> = Vec::with_capacity(values.len());
                for v in values.drain(..) {
                    match at.entry(grid_key(&v)) {
                        std::collections::hash_map::Entry::Occupied(e) => out[*e.get()] = v,
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(out.len());
                            out.push(v);
                        }
                    }
                }
                *values = out;
            }
            _ => {}
        }
    }
}

/// What makes two grid values one for W&B (its `yaml_hash`): the value with mapping keys
/// sorted (serde_json's maps are) and an integral float written as an integer.
fn grid_key(v: &Value) -> String {
    if let Some(f) = v.as_f64().filter(|_| v.is_f64()) {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            return (f as i64).to_string();
        }
    }
    v.to_string()
}

/// W&B's note on the distributions whose `min`/`max` are exponents (they run as written).
pub fn exponent_notices(params: &BTreeMap<String, ParamSpec>, prefix: &str, out: &mut Vec<String>) {
    for (name, spec) in params {
        let path = format!("{prefix}.{name}");
        match spec {
            ParamSpec::Nested(inner) => exponent_notices(inner, &path, out),
            ParamSpec::Dist { dist, .. } => {
                let replacement = match dist {
                    Distribution::LogUniform => ("log_uniform", "log_uniform_values"),
                    Distribution::QLogUniform => ("q_log_uniform", "q_log_uniform_values"),
                    Distribution::InvLogUniform => ("inv_log_uniform", "inv_log_uniform_values"),
                    _ => continue,
                };
                out.push(format!(
                    "{path} uses {}, where min/max specify base-e exponents. Use {} to specify limit values.",
                    replacement.0, replacement.1
                ));
            }
            _ => {}
        }
    }
}

/// Refuses parameters that have no grid (continuous distributions) under `method: grid`, and
/// grids of more than [`MAX_GRID_POINTS`] points.
pub fn check_grid(params: &BTreeMap<String, ParamSpec>, path: &str) -> Result<(), ConfigError> {
    let mut largest: Option<(u64, String)> = None;
    for (p, spec) in flat_sorted(params) {
        if let ParamSpec::Values {
            probabilities: Some(_),
            ..
        } = spec
        {
            return Err(ConfigError::new(
                format!("{path}.{}.probabilities", p.join(".")),
                "method grid takes every value once; probabilities are for method random (W&B refuses them too)",
            ));
        }
        let Some(n) = spec.grid_len() else {
            return Err(ConfigError::new(
                format!("{path}.{}", p.join(".")),
                "method grid needs values, value, int_uniform or q_uniform; a continuous distribution has no grid (use method random)",
            ));
        };
        if largest.as_ref().is_none_or(|(m, _)| n > *m) {
            largest = Some((n, p.join(".")));
        }
    }
    let size = grid_size(params);
    if size > MAX_GRID_POINTS {
        let (n, name) = largest.unwrap_or_default();
        let shown = if size == u64::MAX {
            "more than 10^19".to_string()
        } else {
            size.to_string()
        };
        return Err(ConfigError::new(
            path,
            format!(
                "the grid has {shown} points, more than the {MAX_GRID_POINTS} allowed ({path}.{name} alone has {n}); narrow it, or use method random with run_cap"
            ),
        ));
    }
    Ok(())
}

/// Number of grid points (saturating at `u64::MAX`).
pub fn grid_size(params: &BTreeMap<String, ParamSpec>) -> u64 {
    flat_sorted(params)
        .iter()
        .map(|(_, s)| s.grid_len().unwrap_or(0))
        .fold(1u64, u64::saturating_mul)
}

/// Sets `obj[path[0]][path[1]]… = v`, creating nested objects.
pub(crate) fn insert_path(obj: &mut Map<String, Value>, path: &[String], v: Value) {
    if path.len() == 1 {
        obj.insert(path[0].clone(), v);
        return;
    }
    let child = obj
        .entry(path[0].clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(c) = child {
        insert_path(c, &path[1..], v);
    }
}
