//! `early_terminate`: W&B's section (hyperband) and ours (asha, median), validated into the
//! [`Rule`] the stopping rules (`crate::stopping`) decide with: its bands or rungs computed
//! once, here, at the edge.

use serde_json::Value;

use super::{kind, show, ConfigError};

/// A validated early-termination rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Rule {
    /// W&B's hyperband.
    Hyperband {
        /// Steps (1-based epochs) at which runs are judged.
        bands: Vec<u64>,
        /// η.
        eta: f64,
        /// Judge the value at the band (true, W&B's default) or the best so far.
        strict: bool,
    },
    /// Asynchronous successive halving.
    Asha {
        /// Rung steps.
        rungs: Vec<u64>,
        /// η.
        eta: f64,
    },
    /// Median stopping.
    Median {
        /// Finished trials needed before anything is stopped.
        startup_trials: usize,
        /// Steps before anything is stopped.
        warmup_steps: u64,
    },
}

fn num(m: &serde_json::Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

impl Rule {
    /// Validates an `early_terminate` block and builds its rule; errors name the key.
    pub fn from_config(v: &Value) -> Result<Rule, ConfigError> {
        validate(v)?;
        let m = v
            .as_object()
            .ok_or_else(|| ConfigError::new("early_terminate", "expected a mapping"))?;
        let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
        let eta = num(m, "eta").unwrap_or(3.0);
        match ty {
            "hyperband" => {
                let strict = m.get("strict").and_then(Value::as_bool).unwrap_or(true);
                let bands = if let Some(min_iter) = num(m, "min_iter") {
                    let mut bands = Vec::new();
                    let mut band = min_iter;
                    // W&B makes 100 bands; past 2⁵³ no history is long enough to matter.
                    for _ in 0..100 {
                        if band > 9.0e15 {
                            break;
                        }
                        bands.push(band as u64);
                        band *= eta;
                    }
                    bands
                } else {
                    let max_iter = num(m, "max_iter").unwrap_or(0.0);
                    let s = num(m, "s").unwrap_or(0.0) as u64;
                    let mut band = max_iter;
                    let mut bands = Vec::new();
                    for _ in 0..s {
                        band /= eta;
                        if band < 1.0 {
                            break;
                        }
                        bands.push(band as u64);
                    }
                    bands.sort_unstable();
                    bands
                };
                if bands.is_empty() {
                    return Err(ConfigError::new(
                        "early_terminate",
                        "hyperband has no bands: increase s, decrease eta, or increase max_iter",
                    ));
                }
                Ok(Rule::Hyperband { bands, eta, strict })
            }
            "asha" => {
                let min_iter = num(m, "min_iter").unwrap_or(1.0).max(1.0);
                let max_iter = num(m, "max_iter").unwrap_or(f64::INFINITY);
                let mut rungs = Vec::new();
                let mut r = min_iter;
                while r <= max_iter && r < 9.0e15 && rungs.len() < 64 {
                    rungs.push(r as u64);
                    r *= eta;
                }
                if rungs.is_empty() {
                    return Err(ConfigError::new(
                        "early_terminate.max_iter",
                        "asha needs max_iter ≥ min_iter",
                    ));
                }
                Ok(Rule::Asha { rungs, eta })
            }
            "median" => Ok(Rule::Median {
                startup_trials: num(m, "min_trials").unwrap_or(5.0) as usize,
                warmup_steps: num(m, "warmup_steps").unwrap_or(0.0) as u64,
            }),
            other => Err(ConfigError::new(
                "early_terminate.type",
                format!("expected hyperband, asha or median, got {other:?}"),
            )),
        }
    }
}

/// Most brackets (`s`) a hyperband rule may have.
pub const MAX_BANDS: u64 = 100;

/// W&B's schema for `early_terminate`: `type: hyperband` with `min_iter`, or `max_iter` and `s`,
/// and optional `eta` (> 1, default 3) and `strict` (default true). Our extensions:
/// `type: asha` (`min_iter`, `eta`, `max_iter`) and `type: median` (`min_trials` default 5,
/// `warmup_steps` default 0).
fn validate(v: &Value) -> Result<(), ConfigError> {
    let Value::Object(m) = v else {
        return Err(ConfigError::new(
            "early_terminate",
            format!("expected a mapping, got {}", kind(v)),
        ));
    };
    let ty = m.get("type").and_then(Value::as_str).ok_or_else(|| {
        ConfigError::new(
            "early_terminate.type",
            "missing; expected hyperband, asha or median",
        )
    })?;
    let allowed: &[&str] = match ty {
        "hyperband" => &["type", "min_iter", "max_iter", "s", "eta", "strict"],
        "asha" => &["type", "min_iter", "max_iter", "eta"],
        "median" => &["type", "min_trials", "warmup_steps"],
        other => {
            return Err(ConfigError::new(
                "early_terminate.type",
                format!("expected hyperband, asha or median, got {other:?}"),
            ))
        }
    };
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ConfigError::new(
                format!("early_terminate.{k}"),
                format!("unknown key for {ty}; expected {}", allowed[1..].join(", ")),
            ));
        }
    }
    let int = |k: &str, min: u64| -> Result<Option<u64>, ConfigError> {
        match m.get(k) {
            None => Ok(None),
            Some(v) => v.as_u64().filter(|n| *n >= min).map(Some).ok_or_else(|| {
                ConfigError::new(
                    format!("early_terminate.{k}"),
                    format!("expected an integer ≥ {min}, got {}", show(v)),
                )
            }),
        }
    };
    let (min_iter, max_iter) = (int("min_iter", 1)?, int("max_iter", 1)?);
    let s = int("s", 1)?;
    // Bands are judged on every Report: bound them (W&B's min_iter form makes 100).
    if let Some(s) = s.filter(|s| *s > MAX_BANDS) {
        return Err(ConfigError::new(
            "early_terminate.s",
            format!("expected an integer from 1 to {MAX_BANDS}, got {s}"),
        ));
    }
    int("min_trials", 0)?;
    int("warmup_steps", 0)?;
    if ty == "hyperband" && min_iter.is_none() && (max_iter.is_none() || s.is_none()) {
        return Err(ConfigError::new(
            "early_terminate",
            "hyperband needs min_iter, or max_iter and s",
        ));
    }
    if let Some(e) = m.get("eta") {
        if !e.as_f64().is_some_and(|x| x > 1.0 && x.is_finite()) {
            return Err(ConfigError::new(
                "early_terminate.eta",
                format!("expected a number > 1, got {}", show(e)),
            ));
        }
    }
    if let Some(s) = m.get("strict") {
        if !s.is_boolean() {
            return Err(ConfigError::new(
                "early_terminate.strict",
                format!("expected true or false, got {}", show(s)),
            ));
        }
    }
    Ok(())
}
