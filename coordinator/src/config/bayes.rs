//! `bayes:` (our extension): which model `method: bayes` uses and how it starts.

use serde_json::Value;

use super::{show, ConfigError};

/// The model behind `method: bayes` and its settings (extension key `bayes:`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BayesOptions {
    /// Which model: TPE (default) or a Gaussian process.
    pub engine: BayesEngine,
    /// Random trials before the model is used.
    pub startup_trials: u64,
    /// Candidates drawn from the good density per suggestion.
    pub candidates: usize,
    /// With an early termination rule that judges at rungs: model each trial's value at the
    /// highest rung enough trials reached (`search::budget`) until enough have finished.
    #[serde(default)]
    pub learn_from_rungs: bool,
}

impl Default for BayesOptions {
    fn default() -> Self {
        BayesOptions {
            engine: BayesEngine::Tpe,
            startup_trials: 10,
            candidates: 24,
            learn_from_rungs: false,
        }
    }
}

/// The model behind `method: bayes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BayesEngine {
    /// Tree-structured Parzen estimator (`search::tpe`).
    Tpe,
    /// Gaussian process with expected improvement (`search::gp`).
    Gp,
}

/// Reads the `bayes:` section (absent: the defaults).
pub(super) fn parse(v: Option<&Value>) -> Result<BayesOptions, ConfigError> {
    let mut o = BayesOptions::default();
    let Some(v) = v else { return Ok(o) };
    let Value::Object(m) = v else {
        return Err(ConfigError::new(
            "bayes",
            "expected a mapping, e.g. {engine: tpe, startup_trials: 10}",
        ));
    };
    for (k, v) in m {
        let p = format!("bayes.{k}");
        match k.as_str() {
            "engine" => match v.as_str() {
                Some("tpe") => o.engine = BayesEngine::Tpe,
                Some("gp") => o.engine = BayesEngine::Gp,
                _ => {
                    return Err(ConfigError::new(
                        p,
                        format!("expected tpe or gp, got {}", show(v)),
                    ))
                }
            },
            "startup_trials" => {
                o.startup_trials = v.as_u64().filter(|n| *n <= 10_000).ok_or_else(|| {
                    ConfigError::new(
                        p,
                        format!("expected an integer from 0 to 10000, got {}", show(v)),
                    )
                })?
            }
            "candidates" => {
                o.candidates = v
                    .as_u64()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        ConfigError::new(
                            p,
                            format!("expected an integer from 1 to 10000, got {}", show(v)),
                        )
                    })? as usize
            }
            "learn_from_rungs" => {
                o.learn_from_rungs = v.as_bool().ok_or_else(|| {
                    ConfigError::new(p, format!("expected true or false, got {}", show(v)))
                })?
            }
            _ => {
                return Err(ConfigError::new(
                    p,
                    "unknown key; expected engine, startup_trials, candidates, learn_from_rungs",
                ))
            }
        }
    }
    Ok(o)
}
