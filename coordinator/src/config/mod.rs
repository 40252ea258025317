//! Sweep configs: W&B's sweep schema (YAML or JSON) parsed and validated into a [`SweepSpec`].
//!
//! Raw text → `serde_json::Value` → [`SweepSpec::from_value`], which checks every key and names
//! the offending one by its path (`parameters.lr.min`). Our extensions live under their own
//! top-level keys: `seed`, `max_attempts`, `trainer`, `synthetic`, `mlp`, `bayes`,
//! `program_options`.

pub mod bayes;
pub mod conditions;
pub mod early_terminate;
pub mod mlp;
pub mod params;
pub mod program;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

pub use bayes::{BayesEngine, BayesOptions};
pub use early_terminate::Rule;
pub use params::{Distribution, ParamSpec};
pub use program::ProgramSpec;

/// A config error: where (a dotted path) and what was expected, and the other errors found in
/// the same pass, so that a config is fixed in one go rather than one error per try.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Dotted path of the offending key (`parameters.lr.min`), or `config` for the whole.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
    /// Further errors found in the same pass, in the order of the config.
    pub more: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.more.is_empty() {
            return write!(f, "{}: {}", self.path, self.message);
        }
        write!(f, "{} problems:", self.count())?;
        for e in std::iter::once(self).chain(&self.more) {
            write!(f, "\n  {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        let mut path = path.into();
        // An empty key still gets a visible name: `""` (or `parameters.""`).
        if path.is_empty() || path.ends_with('.') {
            path.push_str("\"\"");
        }
        ConfigError {
            path,
            message: message.into(),
            more: Vec::new(),
        }
    }

    /// The first of `errors` carrying the rest (flattened), or `None` when there are none.
    pub(crate) fn all(errors: Vec<ConfigError>) -> Option<ConfigError> {
        let mut flat = Vec::new();
        for mut e in errors {
            let more = std::mem::take(&mut e.more);
            flat.push(e);
            flat.extend(more);
        }
        let mut it = flat.into_iter();
        let mut first = it.next()?;
        first.more = it.collect();
        Some(first)
    }

    /// How many errors this is, itself included.
    pub fn count(&self) -> usize {
        1 + self.more.len()
    }
}

/// Search method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    /// Every combination, in W&B's order.
    Grid,
    /// Independent draws.
    Random,
    /// Model-based (TPE).
    Bayes,
}

impl Method {
    /// W&B's name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Grid => "grid",
            Method::Random => "random",
            Method::Bayes => "bayes",
        }
    }
}

/// Whether the metric is to be maximised or minimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Goal {
    /// Larger is better.
    Maximize,
    /// Smaller is better (W&B's default).
    Minimize,
}

impl Goal {
    /// W&B's name.
    pub fn name(self) -> &'static str {
        match self {
            Goal::Maximize => "maximize",
            Goal::Minimize => "minimize",
        }
    }

    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Goal::Maximize => a > b,
            Goal::Minimize => a < b,
        }
    }
}

/// The metric a sweep optimises.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metric {
    /// Name of a reported metric (`val_accuracy`, `loss`, `test_accuracy`, …).
    pub name: String,
    /// Direction.
    pub goal: Goal,
    /// Stop the sweep once a trial reaches this value (`target`).
    pub target: Option<f64>,
    /// Value the Bayesian model assumes for failed trials (`impute`: worst, best, latest).
    pub impute: Impute,
}

/// What a failed trial counts as in the Bayesian model (W&B's `metric.impute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Impute {
    /// The worst value seen (default).
    Worst,
    /// The best value seen.
    Best,
    /// The trial's last reported value (worst when it reported none).
    Latest,
}

/// Which trainer runs the trials.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Trainer {
    /// The built-in MLP trainer; `train_samples` limits the training images (extension key
    /// `mlp: {train_samples: N}`); `checkpoints: false` turns off the per-epoch checkpoints
    /// that let an interrupted trial resume (docs/CHECKPOINTS.md).
    Mlp {
        /// Train on only the first N training images.
        train_samples: Option<u64>,
        /// Running trials checkpoint after every epoch (default true).
        #[serde(default = "checkpoints_by_default")]
        checkpoints: bool,
    },
    /// A known test function of the params, for benchmarks and tests.
    Synthetic {
        /// branin, hartmann6, rosenbrock or quadratic.
        function: String,
        /// Epochs per trial.
        epochs: u64,
        /// Sleep per epoch, milliseconds.
        epoch_ms: u64,
    },
    /// The user's own program (W&B's `program` / `command`), run by workers that allow it.
    Program(ProgramSpec),
    /// A sweep for agents (W&B's `wandb.agent`): the config names no program; an agent that
    /// brings its own (a Python function, `worker --sweep ID --program FILE`) runs the trials.
    Agent,
}

impl Trainer {
    /// The name workers know it by (`Trial.trainer`).
    pub fn name(&self) -> &'static str {
        match self {
            Trainer::Mlp { .. } => "mlp",
            Trainer::Synthetic { .. } => "synthetic",
            Trainer::Program(_) => "program",
            Trainer::Agent => "agent",
        }
    }
}

/// A validated sweep.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepSpec {
    /// Display name (`name`), if given.
    pub name: Option<String>,
    /// Search method.
    pub method: Method,
    /// The metric and goal (default: `val_accuracy`, maximize for the MLP trainer; `loss`,
    /// minimize for the synthetic one).
    pub metric: Metric,
    /// Parameters by name (sorted).
    pub parameters: BTreeMap<String, ParamSpec>,
    /// Most trials to run (`run_cap`).
    pub run_cap: Option<u64>,
    /// Seed for random draws and trial seeds (extension; drawn per sweep when the config has
    /// none, and written into the stored config).
    pub seed: u64,
    /// Attempts per trial before it is failed (extension; default 3).
    pub max_attempts: u32,
    /// How many of the best trials keep their trained model (extension; default
    /// [`DEFAULT_KEEP_MODELS`]; 0 keeps none). Specs stored before it was added keep the default.
    #[serde(default = "default_keep_models")]
    pub keep_models: u32,
    /// Trials failing in a row (a program that cannot run, workers that cannot run it) before
    /// the sweep pauses itself (extension; default [`DEFAULT_PAUSE_AFTER_FAILURES`]; 0 never).
    #[serde(default = "default_pause_after_failures")]
    pub pause_after_failures: u32,
    /// Trainer (extension; default the MLP).
    pub trainer: Trainer,
    /// TPE settings (`method: bayes`; extension key `bayes: {engine: tpe, startup_trials,
    /// candidates}`).
    pub bayes: BayesOptions,
    /// The early-termination rule (`early_terminate`).
    pub stopping: Option<Rule>,
    /// Conditional parameters (`when:` beside a parameter; extension). Specs stored before
    /// it was added have none.
    #[serde(default)]
    pub conditions: conditions::Conditions,
    /// Several objectives (`metric:` as a list; extension): all of them, the first being
    /// `metric`; empty for a sweep with one. Specs stored before it was added have one.
    #[serde(default)]
    pub objectives: Vec<Metric>,
    /// The config as given (JSON), for storage and display (stored in a column of its own, so
    /// not in the stored spec).
    #[serde(skip)]
    pub raw: Value,
    /// What a person should know about the config though it is valid (a metric named like an
    /// accuracy that is minimized, a program a trainer key overrides, no metric).
    pub notices: Vec<String>,
}

/// Top-level keys W&B's schema allows, and ours.
const WANDB_KEYS: &[&str] = &[
    "method",
    "metric",
    "parameters",
    "early_terminate",
    "run_cap",
    "name",
    "description",
    "program",
    "command",
    "project",
    "entity",
    "controller",
    "job",
    "image_uri",
    "metrics",
    "scheduler",
];
const OUR_KEYS: &[&str] = &[
    "seed",
    "max_attempts",
    "keep_models",
    "pause_after_failures",
    "trainer",
    "synthetic",
    "mlp",
    "bayes",
    "program_options",
];

fn checkpoints_by_default() -> bool {
    true
}

/// Failures in a row that pause a sweep when its config does not say (`pause_after_failures`).
pub const DEFAULT_PAUSE_AFTER_FAILURES: u32 = 5;

fn default_pause_after_failures() -> u32 {
    DEFAULT_PAUSE_AFTER_FAILURES
}

/// Models kept per sweep when its config does not say (`keep_models`).
pub const DEFAULT_KEEP_MODELS: u32 = 5;
/// Most models one sweep may keep.
pub const MAX_KEEP_MODELS: u32 = 1000;

fn default_keep_models() -> u32 {
    DEFAULT_KEEP_MODELS
}

/// Most parameters (after flattening nested groups) one sweep may have.
pub const MAX_PARAMETERS: usize = 256;

/// Most memory one MLP trial may need, by the estimate of [`mlp_trial_bytes`] (4 GiB).
pub const MAX_TRIAL_BYTES: f64 = 4.0 * 1024.0 * 1024.0 * 1024.0;

/// Estimated peak memory of one MLP trial on 28×28 images and 10 classes: f32 weights, their
/// gradients, two optimizer moments and a look-ahead copy (5 × parameters), plus activations
/// and their gradients for one batch (4 × batch × width × layers).
pub fn mlp_trial_bytes(hidden: f64, layers: f64, batch: f64) -> f64 {
    let weights = 784.0 * hidden + (layers - 1.0).max(0.0) * hidden * hidden + hidden * 10.0;
    4.0 * (5.0 * weights + 4.0 * batch * hidden * layers.max(1.0))
}

/// Refuses a space whose largest network would need more than [`MAX_TRIAL_BYTES`].
fn check_mlp_memory(parameters: &BTreeMap<String, ParamSpec>) -> Result<(), ConfigError> {
    let bound = |name: &str, default: f64| -> f64 {
        parameters
            .get(name)
            .and_then(params::upper_bound)
            .unwrap_or(default)
    };
    let (h, l, b) = (
        bound("hidden_size", 128.0),
        bound("num_layers", 3.0),
        bound("batch_size", 64.0),
    );
    let bytes = mlp_trial_bytes(h, l, b);
    if bytes > MAX_TRIAL_BYTES {
        let field = if parameters.contains_key("hidden_size") {
            "parameters.hidden_size"
        } else {
            "parameters.num_layers"
        };
        return Err(ConfigError::new(
            field,
            format!(
                "the largest network (hidden_size {h}, num_layers {l}, batch_size {b}) would need about {:.1} GiB per trial; at most {:.0} GiB is allowed",
                bytes / (1u64 << 30) as f64,
                MAX_TRIAL_BYTES / (1u64 << 30) as f64
            ),
        ));
    }
    Ok(())
}

/// Largest sweep config, in bytes (real ones are a few KiB).
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Parses YAML or JSON text into a JSON value (YAML is a superset of JSON).
pub fn parse_text(text: &str) -> Result<Value, ConfigError> {
    parse_text_noting(text, &mut Vec::new())
}

/// [`parse_text`], with what the YAML reader noticed (duplicate keys) added to `notices`.
pub fn parse_text_noting(text: &str, notices: &mut Vec<String>) -> Result<Value, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::new(
            "config",
            format!(
                "{} bytes; a sweep config may have at most {MAX_CONFIG_BYTES} bytes (1 MiB)",
                text.len()
            ),
        ));
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            return Ok(v);
        }
    }
    // As W&B reads it (PyYAML): see `yaml`.
    yaml::load(text, notices)
}

impl SweepSpec {
    /// Parses and validates YAML or JSON text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut read = Vec::new();
        let v = parse_text_noting(text, &mut read)?;
        let mut spec = Self::from_value(v)?;
        read.append(&mut spec.notices);
        spec.notices = read;
        Ok(spec)
    }

    /// Validates a parsed config.
    pub fn from_value(raw: Value) -> Result<Self, ConfigError> {
        let Value::Object(top) = &raw else {
            let got = match &raw {
                Value::Null => "the file is empty (or holds only comments)".to_string(),
                Value::Array(_) => "it is a list".into(),
                other => format!(
                    "it is the single value {}",
                    other.to_string().chars().take(40).collect::<String>()
                ),
            };
            return Err(ConfigError::new(
                "config",
                format!("{got}; a sweep config is a mapping with method, parameters and optional metric, run_cap, early_terminate (docs/CONFIG.md)"),
            ));
        };
        // The keys, the method and every parameter are checked before any error is returned:
        // each is independent of the others.
        let mut errors = Vec::new();
        for k in top.keys() {
            if !WANDB_KEYS.contains(&k.as_str()) && !OUR_KEYS.contains(&k.as_str()) {
                errors.push(ConfigError::new(
                    k.as_str(),
                    format!(
                        "unknown top-level key; expected one of {}, {}",
                        WANDB_KEYS.join(", "),
                        OUR_KEYS.join(", ")
                    ),
                ));
            }
        }
        let method = match top.get("method") {
            None => Err(ConfigError::new(
                "method",
                "missing; expected grid, random or bayes",
            )),
            Some(Value::String(s)) => match s.as_str() {
                "grid" => Ok(Method::Grid),
                "random" => Ok(Method::Random),
                "bayes" => Ok(Method::Bayes),
                // W&B's custom method hands the search to an optimizer engine (`scheduler:`);
                // ours is the model-based search, said plainly below.
                "custom" => Ok(Method::Bayes),
                other => Err(ConfigError::new(
                    "method",
                    format!("expected one of grid, random, bayes; got {other:?}"),
                )),
            },
            Some(v) => Err(ConfigError::new(
                "method",
                format!("expected a string, got {}", kind(v)),
            )),
        };
        // `when:` (conditional parameters, ours) comes out first; the rest is W&B's schema.
        let mut raw_conditions = Vec::new();
        let parameters = match top.get("parameters") {
            None => Err(ConfigError::new(
                "parameters",
                "missing; expected a mapping of parameter names",
            )),
            Some(v) => {
                let mut v = v.clone();
                raw_conditions = conditions::extract(&mut v);
                params::parse_parameters(&v, "parameters")
            }
        };
        // Unknown top-level keys are errors beside others (they may explain them); alone,
        // they are notices, as W&B's CLI warns and goes on.
        let (method, parameters) = match (method, parameters) {
            (Ok(m), Ok(p)) => (m, p),
            (m, p) => {
                errors.extend(m.err());
                errors.extend(p.err());
                return Err(ConfigError::all(errors)
                    .unwrap_or_else(|| ConfigError::new("config", "is not valid")));
            }
        };
        let mut notices: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{}: unknown top-level key, ignored; expected one of {}, {}",
                    e.path,
                    WANDB_KEYS.join(", "),
                    OUR_KEYS.join(", ")
                )
            })
            .collect();
        let custom = top.get("method").and_then(Value::as_str) == Some("custom");
        check_wandb_extras(top, custom, &mut notices)?;
        let trainer = parse_trainer(top, &parameters, &mut notices)?;
        let parameters = if matches!(trainer, Trainer::Mlp { .. }) {
            let rename = match top.get("mlp").and_then(|m| m.get("rename")) {
                Some(r) => mlp::parse_rename(r)?,
                None => BTreeMap::new(),
            };
            mlp::adapt(parameters, &rename, &mut notices)?
        } else {
            parameters
        };
        // `metrics:` (W&B's multi-objective list, method custom): we optimize the first.
        let first_of_metrics = top
            .get("metrics")
            .and_then(Value::as_array)
            .and_then(|m| m.first())
            .filter(|_| !top.contains_key("metric"));
        let (metric, objectives) = match top.get("metric") {
            Some(Value::Array(list)) => parse_objectives(list, &trainer, &mut notices)?,
            given => (
                parse_metric(given.or(first_of_metrics), &trainer, &mut notices)?,
                Vec::new(),
            ),
        };

        if parameters.is_empty() {
            return Err(ConfigError::new(
                "parameters",
                "expected at least one parameter",
            ));
        }
        let n_params = params::flat_sorted(&parameters).len();
        if n_params > MAX_PARAMETERS {
            return Err(ConfigError::new(
                "parameters",
                format!("{n_params} parameters; at most {MAX_PARAMETERS} are allowed"),
            ));
        }
        if matches!(trainer, Trainer::Mlp { .. }) {
            check_mlp_memory(&parameters)?;
        }
        let run_cap = match top.get("run_cap") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Some(n),
                _ => {
                    return Err(ConfigError::new(
                        "run_cap",
                        format!("expected an integer > 0, got {}", show(v)),
                    ))
                }
            },
        };
        let seed = match top.get("seed") {
            None => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                ConfigError::new("seed", format!("expected an integer ≥ 0, got {}", show(v)))
            })?,
        };
        let max_attempts = match top.get("max_attempts") {
            None => 3,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=100).contains(&n) => n as u32,
                _ => {
                    return Err(ConfigError::new(
                        "max_attempts",
                        format!("expected an integer from 1 to 100, got {}", show(v)),
                    ))
                }
            },
        };
        let pause_after_failures = match top.get("pause_after_failures") {
            None => DEFAULT_PAUSE_AFTER_FAILURES,
            Some(v) => match v.as_u64() {
                Some(n) if n <= 1_000_000 => n as u32,
                _ => {
                    return Err(ConfigError::new(
                        "pause_after_failures",
                        format!(
                            "expected an integer from 0 (never pause) to 1000000, got {}",
                            show(v)
                        ),
                    ))
                }
            },
        };
        let keep_models = match top.get("keep_models") {
            None => DEFAULT_KEEP_MODELS,
            Some(v) => match v.as_u64() {
                Some(n) if n <= u64::from(MAX_KEEP_MODELS) => n as u32,
                _ => {
                    return Err(ConfigError::new(
                        "keep_models",
                        format!(
                            "expected an integer from 0 to {MAX_KEEP_MODELS} (the best trials whose trained models are kept), got {}",
                            show(v)
                        ),
                    ))
                }
            },
        };
        let stopping = match top.get("early_terminate") {
            None => None,
            Some(v) => Some(Rule::from_config(v)?),
        };
        let mut parameters = parameters;
        if method == Method::Grid {
            params::check_grid(&parameters, "parameters")?;
            params::dedupe_for_grid(&mut parameters);
        }
        params::exponent_notices(&parameters, "parameters", &mut notices);
        let conditions = conditions::parse(raw_conditions, &parameters)?;
        if method == Method::Grid
            && !conditions.is_empty()
            && params::grid_size(&parameters) > conditions::MAX_CONDITIONAL_GRID
        {
            return Err(ConfigError::new(
                "parameters",
                format!(
                    "a grid of {} combinations with conditional parameters; at most {} (the grid is walked to leave out the inactive ones): use random or bayes",
                    params::grid_size(&parameters),
                    conditions::MAX_CONDITIONAL_GRID
                ),
            ));
        }
        if metric.name.is_empty() {
            if method == Method::Bayes {
                return Err(ConfigError::new(
                    "metric",
                    "missing; method bayes needs a metric to optimize, e.g. {name: val_loss, goal: minimize}",
                ));
            }
            if top.contains_key("early_terminate") {
                return Err(ConfigError::new(
                    "metric",
                    "missing; early_terminate needs a metric to compare trials by",
                ));
            }
        }
        if objectives.len() > 1 && stopping.is_some() {
            notices.push(format!(
                "early_terminate judges trials by the first objective, {}, alone",
                metric.name
            ));
        }
        if let Some(n) = top.get("name") {
            if !n.is_string() {
                return Err(ConfigError::new(
                    "name",
                    format!("expected a string, got {}", kind(n)),
                ));
            }
        }
        let spec = SweepSpec {
            name: top.get("name").and_then(Value::as_str).map(str::to_string),
            method,
            metric,
            parameters,
            run_cap,
            seed,
            max_attempts,
            keep_models,
            pause_after_failures,
            trainer,
            bayes: bayes::parse(top.get("bayes"))?,
            stopping,
            conditions,
            objectives,
            raw,
            notices,
        };
        spec.check_trainer()?;
        Ok(spec)
    }

    /// MiB of files each trial's program may hand back (docs/PROGRAMS.md): the program's
    /// `max_files_mb`, the default for an agent sweep, none for the built-in trainers or when
    /// the sweep keeps no trial's outputs (`keep_models: 0`).
    pub fn max_files_mb(&self) -> u32 {
        match &self.trainer {
            _ if self.keep_models == 0 => 0,
            Trainer::Program(p) => p.max_files_mb,
            Trainer::Agent => program::DEFAULT_MAX_FILES_MB,
            Trainer::Mlp { .. } | Trainer::Synthetic { .. } => 0,
        }
    }

    /// GPUs each trial runs with (`program_options.gpus`; 0 for the built-in trainers and for
    /// agent sweeps, whose agents bring their own).
    pub fn gpus_per_trial(&self) -> u32 {
        match &self.trainer {
            Trainer::Program(p) => p.gpus,
            _ => 0,
        }
    }

    /// Workers each trial runs on at once (`program_options.nodes`; 1 but for a program sweep
    /// that asks for more).
    pub fn nodes_per_trial(&self) -> u32 {
        match &self.trainer {
            Trainer::Program(p) => p.nodes.max(1),
            _ => 1,
        }
    }

    /// The objectives the sweep ranks by: `metric` alone, or all of several.
    pub fn objectives(&self) -> &[Metric] {
        if self.objectives.is_empty() {
            std::slice::from_ref(&self.metric)
        } else {
            &self.objectives
        }
    }

    /// Whether the sweep has several objectives (ranked by Pareto front).
    pub fn multi_objective(&self) -> bool {
        self.objectives.len() > 1
    }

    /// Number of trials the sweep runs at most: the grid size (capped by run_cap) or run_cap;
    /// `None` for an unbounded random sweep.
    pub fn total(&self) -> Option<u64> {
        match self.method {
            Method::Grid => {
                let g = if self.conditions.is_empty() {
                    params::grid_size(&self.parameters)
                } else {
                    self.conditions.grid_count(&self.parameters)
                };
                Some(self.run_cap.map_or(g, |c| c.min(g)))
            }
            Method::Random | Method::Bayes => self.run_cap,
        }
    }

    /// The spec with `seed` written into its config when the config names none: a sweep
    /// submitted again without a seed draws new trials, and the stored config says how to
    /// repeat any sweep (put its seed in the file).
    pub fn with_seed_if_unset(mut self, seed: u64) -> SweepSpec {
        if let Value::Object(m) = &mut self.raw {
            if !m.contains_key("seed") {
                m.insert("seed".into(), seed.into());
                self.seed = seed;
            }
        }
        self
    }

    /// Checks that the built-in MLP trainer understands every parameter and every listed value,
    /// so that a sweep whose trials would all fail is refused at submit.
    fn check_trainer(&self) -> Result<(), ConfigError> {
        if !matches!(self.trainer, Trainer::Mlp { .. }) {
            return Ok(());
        }
        for (name, spec) in &self.parameters {
            let path = format!("parameters.{name}");
            if !mlp_knows(name) {
                return Err(ConfigError::new(
                    path,
                    format!(
                        "the mlp trainer has no parameter {name:?}; expected one of {}",
                        sweep_trainer::config::PARAMS.join(", ")
                    ),
                ));
            }
            for (i, v) in spec.listed_values().into_iter().enumerate() {
                let mut b = sweep_trainer::config::ConfigBuilder::default();
                let built = b.set(name, v).and_then(|()| b.build());
                if let Err(e) = built {
                    let at = match spec {
                        ParamSpec::Values { .. } => format!("{path}.values[{i}]"),
                        ParamSpec::Constant(_) => format!("{path}.value"),
                        _ => format!("{path}.{}", if i == 0 { "min" } else { "max" }),
                    };
                    return Err(ConfigError::new(at, e.message));
                }
            }
        }
        Ok(())
    }
}

/// W&B keys we take but do not act on as W&B does: `controller`, `metrics`, `scheduler`
/// (its custom method). Checked as W&B's schema checks them; what we do instead is a notice.
fn check_wandb_extras(
    top: &Map<String, Value>,
    custom: bool,
    notices: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if let Some(c) = top.get("controller") {
        let t = c.get("type").and_then(Value::as_str);
        if !matches!(t, Some("local" | "cloud")) {
            return Err(ConfigError::new(
                "controller.type",
                format!(
                    "expected local or cloud (W&B's controllers), got {}",
                    c.get("type").map_or("nothing".into(), show)
                ),
            ));
        }
        notices.push(
            "controller: the coordinator is this sweep's controller, whatever the type".into(),
        );
    }
    if let Some(m) = top.get("metrics") {
        if !custom {
            return Err(ConfigError::new(
                "metrics",
                "needs method: custom (W&B's rule); use metric: for one metric",
            ));
        }
        if top.contains_key("metric") {
            return Err(ConfigError::new(
                "metrics",
                "cannot be used together with metric (W&B's rule)",
            ));
        }
        let Some(list) = m.as_array().filter(|l| l.len() >= 2) else {
            return Err(ConfigError::new(
                "metrics",
                "expected a list of at least two metrics, each {name, goal}",
            ));
        };
        let names: Vec<String> = list
            .iter()
            .map(|x| x.get("name").map_or("?".into(), show))
            .collect();
        notices.push(format!(
            "metrics: sweep optimizes one metric, the first ({}); the others ({}) are reported, not optimized",
            names[0],
            names[1..].join(", ")
        ));
    }
    if let Some(s) = top.get("scheduler") {
        if top.contains_key("early_terminate") {
            return Err(ConfigError::new(
                "scheduler",
                "cannot be used together with early_terminate (W&B's rule)",
            ));
        }
        let engine = s.get("engine").and_then(Value::as_str).unwrap_or("?");
        let search = match top.get("method").and_then(Value::as_str) {
            Some("custom") | Some("bayes") => {
                "the coordinator's own bayes search (TPE)".to_string()
            }
            Some(m) => format!("method {m}"),
            None => "the method".to_string(),
        };
        notices.push(format!(
            "scheduler: W&B's {engine} engine is not run here; {search} chooses the trials"
        ));
    }
    if custom {
        notices.push(
            "method custom: runs as method bayes, the coordinator's model-based search (TPE)"
                .into(),
        );
    }
    Ok(())
}

/// Whether the built-in MLP trainer knows the parameter `name`.
fn mlp_knows(name: &str) -> bool {
    sweep_trainer::config::canonical_name(name).is_some()
        || name.eq_ignore_ascii_case(sweep_trainer::config::PRESET)
}

/// The names among `names` the built-in MLP does not have, each with the MLP's nearest name
/// when one is close (a misspelling, `hiden_size` for `hidden_size`).
fn foreign_to_mlp<'a>(
    names: impl Iterator<Item = &'a str>,
) -> Vec<(&'a str, Option<&'static str>)> {
    names
        .filter(|n| !mlp_knows(n))
        .map(|n| (n, misspelt(n, &sweep_trainer::config::PARAMS)))
        .collect()
}

/// The name in `names` that `name` looks like a misspelling of: at most two edits, and at
/// most a third of it (`hiden_size`, `learningrate`; not `lr`, someone's own name).
fn misspelt<'a>(name: &str, names: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    names
        .iter()
        .map(|n| (edit_distance(&lower, n), *n))
        .filter(|&(d, _)| d <= 2 && d * 3 <= lower.chars().count())
        .min()
        .map(|(_, n)| n)
}

/// `a (did you mean b?), c`: the names with their suggestions, five at most.
fn with_suggestions(names: &[(&str, Option<&str>)]) -> String {
    let mut shown: Vec<String> = names
        .iter()
        .take(5)
        .map(|(n, near)| match near {
            Some(m) => format!("{n} (did you mean {m}?)"),
            None => n.to_string(),
        })
        .collect();
    if names.len() > 5 {
        shown.push("…".into());
    }
    shown.join(", ")
}

/// The metric's name as the raw config gives it (`metric.name`, the first of a `metric` list,
/// else the first of `metrics`).
fn metric_name_of(top: &Map<String, Value>) -> Option<String> {
    let first = |v: &Value| v.as_array().and_then(|a| a.first()).cloned();
    let m = match top.get("metric") {
        Some(v @ Value::Array(_)) => first(v)?,
        Some(v) => v.clone(),
        None => top.get("metrics").and_then(first)?,
    };
    m.get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// `name`, with the MLP metric it looks like a misspelling of (`val_acc (did you mean
/// val_accuracy?)`).
fn metric_with_suggestion(name: &str) -> String {
    match closest(name, MLP_METRICS) {
        Some(m) => format!("{name} (did you mean {m}?)"),
        None => name.to_string(),
    }
}

impl SweepSpec {
    /// Why the built-in MLP's local workers (`coordinator run`) cannot serve this sweep, if
    /// they cannot: a sweep for agents, with its names the MLP does not have.
    pub fn local_refusal(&self) -> Option<String> {
        if self.trainer != Trainer::Agent {
            return None;
        }
        let foreign = foreign_to_mlp(self.parameters.keys().map(String::as_str));
        let metric = &self.metric.name;
        let why = if foreign.is_empty()
            && !metric.is_empty()
            && !MLP_METRICS.contains(&metric.as_str())
        {
            format!(
                "its metric {} is not one the built-in MLP reports and it names no program",
                metric_with_suggestion(metric)
            )
        } else if foreign.is_empty() {
            "it says trainer: agent".to_string()
        } else {
            format!(
                "its parameters {} are not the built-in MLP's and it names no program",
                with_suggestions(&foreign)
            )
        };
        Some(format!(
            "this is a sweep for agents ({why}), and `run`'s workers run the built-in MLP or the config's program: fix a misspelt name, add `program: train.py` (or `command:`) to run your script, or `coordinator submit` it and start agents (wandb.agent in Python, or worker --sweep ID --program FILE); nothing was run"
        ))
    }
}

fn parse_trainer(
    top: &Map<String, Value>,
    parameters: &BTreeMap<String, ParamSpec>,
    notices: &mut Vec<String>,
) -> Result<Trainer, ConfigError> {
    let program = program::parse(top)?;
    if program.is_none() && top.contains_key("program_options") {
        return Err(ConfigError::new(
            "program_options",
            "the config has no program or command for these options to apply to",
        ));
    }
    // As in W&B, a config without program or command whose parameters are someone's own is a
    // sweep for agents (`wandb.agent`), not an error.
    let foreign = foreign_to_mlp(parameters.keys().map(String::as_str));
    // So is one whose metric the MLP never reports (the script logs its own names).
    let unreported = metric_name_of(top).filter(|m| !MLP_METRICS.contains(&m.as_str()));
    let name = match (top.get("trainer"), &program) {
        (None, Some(_)) => "program",
        (None, None) if foreign.is_empty() && unreported.is_some() => {
            notices.push(format!(
                "no program, and the metric {} is not one the mlp trainer reports: this is a sweep for agents — wandb.agent(SWEEP_ID, function=…) in Python, or worker --sweep SWEEP_ID --program train.py; add trainer: mlp to run the built-in MLP instead",
                metric_with_suggestion(unreported.as_deref().unwrap_or_default())
            ));
            "agent"
        }
        (None, None) if !foreign.is_empty() => {
            notices.push(format!(
                "no program, and parameters the mlp trainer does not have ({}): this is a sweep for agents — wandb.agent(SWEEP_ID, function=…) in Python, or worker --sweep SWEEP_ID --program train.py; add trainer: mlp to run the built-in MLP instead",
                with_suggestions(&foreign)
            ));
            "agent"
        }
        (None, None) => "mlp",
        (Some(Value::String(s)), _) => s.as_str(),
        (Some(v), _) => {
            return Err(ConfigError::new(
                "trainer",
                format!("expected mlp, synthetic, program or agent, got {}", show(v)),
            ))
        }
    };
    match (name, program) {
        ("agent", None) => return Ok(Trainer::Agent),
        ("agent", Some(p)) => {
            notices.push(format!(
                "trainer: agent: the config's {} is not run by the coordinator's workers; agents bring their own",
                p.program
                    .map(|p| format!("program {p}"))
                    .unwrap_or_else(|| "command".into())
            ));
            return Ok(Trainer::Agent);
        }
        ("program", Some(p)) => return Ok(Trainer::Program(p)),
        ("program", None) => {
            return Err(ConfigError::new(
                "trainer",
                "program needs the config's program (e.g. program: train.py) or command",
            ))
        }
        (other, Some(p)) => notices.push(format!(
            "trainer: {other} runs our built-in trainer; the config's {} is not run",
            p.program
                .map(|p| format!("program {p}"))
                .unwrap_or_else(|| "command".into())
        )),
        _ => {}
    }
    match name {
        "mlp" => {
            let mut train_samples = None;
            let mut checkpoints = true;
            if let Some(m) = top.get("mlp") {
                let Value::Object(m) = m else {
                    return Err(ConfigError::new(
                        "mlp",
                        "expected a mapping, e.g. {train_samples: 5000}",
                    ));
                };
                for (k, v) in m {
                    match k.as_str() {
                        // Applied to the parameters by `mlp::adapt`.
                        "rename" => {
                            mlp::parse_rename(v)?;
                        }
                        "train_samples" => {
                            train_samples =
                                Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                                    ConfigError::new(
                                        "mlp.train_samples",
                                        format!("expected an integer > 0, got {}", show(v)),
                                    )
                                })?)
                        }
                        "checkpoints" => {
                            checkpoints = v.as_bool().ok_or_else(|| {
                                ConfigError::new(
                                    "mlp.checkpoints",
                                    format!("expected true or false, got {}", show(v)),
                                )
                            })?
                        }
                        _ => {
                            return Err(ConfigError::new(
                                format!("mlp.{k}"),
                                "unknown key; expected train_samples, checkpoints, rename",
                            ))
                        }
                    }
                }
            }
            Ok(Trainer::Mlp {
                train_samples,
                checkpoints,
            })
        }
        "synthetic" => {
            let s = top
                .get("synthetic")
                .cloned()
                .unwrap_or(Value::Object(Map::new()));
            let Value::Object(s) = s else {
                return Err(ConfigError::new(
                    "synthetic",
                    "expected a mapping {function, epochs, epoch_ms}",
                ));
            };
            let mut function = "quadratic".to_string();
            let mut epochs = 5;
            let mut epoch_ms = 0;
            for (k, v) in &s {
                let p = format!("synthetic.{k}");
                match k.as_str() {
                    "function" => {
                        let f = v.as_str().unwrap_or("");
                        if !sweep_trainer::SYNTHETIC_FUNCTIONS.contains(&f) {
                            return Err(ConfigError::new(
                                p,
                                format!(
                                    "expected one of {}, got {}",
                                    sweep_trainer::SYNTHETIC_FUNCTIONS.join(", "),
                                    show(v)
                                ),
                            ));
                        }
                        function = f.to_string();
                    }
                    "epochs" => {
                        epochs = v
                            .as_u64()
                            .filter(|n| (1..=100_000).contains(n))
                            .ok_or_else(|| {
                                ConfigError::new(
                                    p,
                                    format!(
                                        "expected an integer from 1 to 100000, got {}",
                                        show(v)
                                    ),
                                )
                            })?
                    }
                    "epoch_ms" => {
                        epoch_ms = v.as_u64().filter(|n| *n <= 3_600_000).ok_or_else(|| {
                            ConfigError::new(
                                p,
                                format!("expected milliseconds from 0 to 3600000, got {}", show(v)),
                            )
                        })?
                    }
                    _ => {
                        return Err(ConfigError::new(
                            p,
                            "unknown key; expected function, epochs, epoch_ms",
                        ))
                    }
                }
            }
            Ok(Trainer::Synthetic {
                function,
                epochs,
                epoch_ms,
            })
        }
        other => Err(ConfigError::new(
            "trainer",
            format!("expected mlp, synthetic, program or agent, got {other:?}"),
        )),
    }
}

/// What the built-in MLP trainer reports, each epoch and at the end.
pub const MLP_METRICS: &[&str] = &[
    "val_accuracy",
    "val_loss",
    "accuracy",
    "loss",
    "test_accuracy",
    "test_loss",
    "epoch_seconds",
    "samples_per_second",
    "epochs",
    "param_count",
];

fn parse_metric(
    v: Option<&Value>,
    trainer: &Trainer,
    notices: &mut Vec<String>,
) -> Result<Metric, ConfigError> {
    let metric = parse_metric_key(v, trainer)?;
    if let Trainer::Mlp { .. } = trainer {
        if !MLP_METRICS.contains(&metric.name.as_str()) {
            let hint = closest(&metric.name, MLP_METRICS)
                .map(|c| format!("did you mean {c}? "))
                .unwrap_or_default();
            return Err(ConfigError::new(
                "metric.name",
                format!(
                    "the mlp trainer never reports {:?}, so no trial would be ranked; {hint}it reports {}",
                    metric.name,
                    MLP_METRICS.join(", ")
                ),
            ));
        }
    }
    let goal_given = matches!(v, Some(Value::Object(m)) if m.contains_key("goal"));
    let lower = metric.name.to_ascii_lowercase();
    if !goal_given
        && v.is_some()
        && ["acc", "f1", "auc", "precision", "recall", "score", "reward"]
            .iter()
            .any(|w| lower.contains(w))
    {
        notices.push(format!(
            "metric {} has no goal, so it is minimized (W&B's default); add goal: maximize if larger is better",
            metric.name
        ));
    }
    if metric.name.is_empty() {
        notices
            .push("the config has no metric: trials run and are listed, but none is ranked".into());
    }
    Ok(metric)
}

/// Whether a trial whose final values `value` gives has reached the targets of `objectives`:
/// every objective that has one is at or past it (and at least one has one).
pub fn targets_reached(objectives: &[Metric], value: impl Fn(&str) -> Option<f64>) -> bool {
    let mut any = false;
    for m in objectives {
        if let Some(target) = m.target {
            any = true;
            match value(&m.name) {
                Some(v) if v == target || m.goal.better(v, target) => {}
                _ => return false,
            }
        }
    }
    any
}

/// Most objectives a sweep may have.
pub const MAX_OBJECTIVES: usize = 8;

/// `metric:` as a list (several objectives, an extension): each `{name, goal, target, impute}`
/// as a single metric is, names distinct. A list of one is a single metric.
fn parse_objectives(
    list: &[Value],
    trainer: &Trainer,
    notices: &mut Vec<String>,
) -> Result<(Metric, Vec<Metric>), ConfigError> {
    if list.is_empty() || list.len() > MAX_OBJECTIVES {
        return Err(ConfigError::new(
            "metric",
            format!(
                "expected 1 to {MAX_OBJECTIVES} objectives, each {{name, goal}}, got {}",
                list.len()
            ),
        ));
    }
    let mut out: Vec<Metric> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let m = parse_metric(Some(v), trainer, notices).map_err(|mut e| {
            e.path = e.path.replacen("metric", &format!("metric[{i}]"), 1);
            e
        })?;
        if let Some(j) = out.iter().position(|o| o.name == m.name) {
            return Err(ConfigError::new(
                format!("metric[{i}].name"),
                format!(
                    "{:?} is already objective {j}; each objective names a different metric",
                    m.name
                ),
            ));
        }
        out.push(m);
    }
    let first = out[0].clone();
    if out.len() == 1 {
        return Ok((first, Vec::new()));
    }
    Ok((first, out))
}

/// The name in `names` nearest to `name` (a prefix, or at most a third of it edited).
fn closest<'a>(name: &str, names: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    if let Some(n) = names
        .iter()
        .find(|n| !lower.is_empty() && (n.starts_with(&lower) || lower.starts_with(**n)))
    {
        return Some(n);
    }
    names
        .iter()
        .map(|n| (edit_distance(&lower, n), *n))
        .filter(|(d, _)| *d <= lower.len().max(3) / 3)
        .min()
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn parse_metric_key(v: Option<&Value>, trainer: &Trainer) -> Result<Metric, ConfigError> {
    let default = match trainer {
        Trainer::Mlp { .. } => Metric {
            name: "val_accuracy".into(),
            goal: Goal::Maximize,
            target: None,
            impute: Impute::Worst,
        },
        Trainer::Synthetic { .. } => Metric {
            name: "loss".into(),
            goal: Goal::Minimize,
            target: None,
            impute: Impute::Worst,
        },
        // W&B runs a grid or random sweep without a metric; nothing is ranked then.
        Trainer::Program(_) | Trainer::Agent => Metric {
            name: String::new(),
            goal: Goal::Minimize,
            target: None,
            impute: Impute::Worst,
        },
    };
    let Some(v) = v else { return Ok(default) };
    let Value::Object(m) = v else {
        return Err(ConfigError::new(
            "metric",
            format!("expected a mapping {{name, goal}}, got {}", kind(v)),
        ));
    };
    for k in m.keys() {
        if !["name", "goal", "target", "impute", "impute_while_running"].contains(&k.as_str()) {
            return Err(ConfigError::new(
                format!("metric.{k}"),
                "unknown key; expected name, goal, target",
            ));
        }
    }
    let name = match m.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(v) => {
            return Err(ConfigError::new(
                "metric.name",
                format!("expected a metric name, got {}", show(v)),
            ))
        }
        None => {
            return Err(ConfigError::new(
                "metric.name",
                "missing; expected e.g. val_accuracy",
            ))
        }
    };
    let goal = match m.get("goal") {
        None => Goal::Minimize,
        Some(Value::String(s)) if s == "minimize" => Goal::Minimize,
        Some(Value::String(s)) if s == "maximize" => Goal::Maximize,
        Some(v) => {
            return Err(ConfigError::new(
                "metric.goal",
                format!("expected minimize or maximize, got {}", show(v)),
            ))
        }
    };
    let target = match m.get("target") {
        None => None,
        Some(t) => Some(t.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
            ConfigError::new(
                "metric.target",
                format!("expected a number, got {}", show(t)),
            )
        })?),
    };
    let impute = match m.get("impute").map(|v| (v, v.as_str())) {
        None => Impute::Worst,
        Some((_, Some("worst"))) => Impute::Worst,
        Some((_, Some("best"))) => Impute::Best,
        Some((_, Some("latest"))) => Impute::Latest,
        Some((v, _)) => {
            return Err(ConfigError::new(
                "metric.impute",
                format!("expected worst, best or latest, got {}", show(v)),
            ))
        }
    };
    Ok(Metric {
        name,
        goal,
        target,
        impute,
    })
}

pub(crate) use sweep_trainer::config::kind;

pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::Object(_) | Value::Array(_) | Value::Null => kind(v).to_string(),
        other => other.to_string(),
    }
}

impl fmt::Display for SweepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.raw)
    }
}

#[cfg(test)]
pub(crate) mod tests;
