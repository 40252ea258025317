//! A trial's configuration: the parameter vocabulary of DESIGN.md §4, parsed from any mix of
//! sources (config file, command-line flags, a coordinator's typed map) and validated into a
//! [`TrainConfig`].
//!
//! Two stages, as in ripgrep: [`ConfigBuilder`] takes raw `name = value` pairs (names in
//! snake_case or kebab-case, values as JSON), and [`ConfigBuilder::build`] checks every value
//! and fills defaults. Every error names the parameter.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::dataset::DatasetSpec;
use crate::names::{Activation, Init, Loss, OptimizerKind, Schedule};

/// A bad parameter: which one, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The parameter's snake_case name (or the file that could not be read).
    pub field: String,
    /// What was wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Optimizer hyperparameters (docs/TRAINING.md and the worker's `optim` module say where each
/// one enters).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Hyper {
    /// Learning rate η.
    pub learning_rate: f64,
    /// μ for momentum and nag.
    pub momentum: f64,
    /// β for rmsprop.
    pub beta: f64,
    /// β₁ for adam and nadam.
    pub beta1: f64,
    /// β₂ for adam and nadam.
    pub beta2: f64,
    /// ε for rmsprop, adam and nadam.
    pub epsilon: f64,
    /// λ, the L2 weight decay on weights (not biases); decoupled for adamw.
    pub weight_decay: f64,
    /// The largest L2 norm of the whole gradient: a longer one is scaled down to it before the
    /// step (PyTorch's `clip_grad_norm_`); 0 turns clipping off.
    pub clip_norm: f64,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            learning_rate: 1e-3,
            momentum: 0.9,
            beta: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            clip_norm: 0.0,
        }
    }
}

/// The learning rate over a trial (docs/TRAINING.md): a linear warm-up, then the schedule.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LrSchedule {
    /// What follows the warm-up.
    pub kind: Schedule,
    /// `step`: epochs between two decays.
    pub step_epochs: usize,
    /// `step`: the factor of each decay.
    pub gamma: f64,
    /// `cosine`: the learning rate at the end.
    pub min_lr: f64,
    /// Epochs (a fraction allowed) over which the rate rises linearly to the learning rate.
    pub warmup_epochs: f64,
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule {
            kind: Schedule::Constant,
            step_epochs: 10,
            gamma: 0.1,
            min_lr: 0.0,
            warmup_epochs: 0.0,
        }
    }
}

/// Every parameter name the trainer knows, in the order of DESIGN.md §4 and then the ones
/// added since.
pub const PARAMS: [&str; 25] = [
    "dataset",
    "epochs",
    "batch_size",
    "loss",
    "optimizer",
    "learning_rate",
    "momentum",
    "beta",
    "beta1",
    "beta2",
    "epsilon",
    "weight_decay",
    "clip_norm",
    "weight_init",
    "num_layers",
    "hidden_size",
    "activation",
    "seed",
    "dropout",
    "batch_norm",
    "lr_schedule",
    "lr_step_epochs",
    "lr_gamma",
    "lr_min",
    "warmup_epochs",
];

/// Another way to give `dropout`: the probability of keeping a unit (TensorFlow 1's
/// `keep_prob`), `dropout = 1 − keep_prob`.
pub const KEEP_PROB: &str = "keep_prob";

/// Largest width of one hidden layer (a guard against configs that would exhaust memory).
pub const MAX_HIDDEN: usize = 16_384;
/// Most hidden layers.
pub const MAX_LAYERS: usize = 64;
/// Largest batch.
pub const MAX_BATCH: usize = 65_536;
/// Most epochs.
pub const MAX_EPOCHS: usize = 100_000;

/// A validated trial configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The data set to train on.
    pub dataset: DatasetSpec,
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per gradient step (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Training loss.
    pub loss: Loss,
    /// Update rule.
    pub optimizer: OptimizerKind,
    /// Optimizer hyperparameters and weight decay.
    pub hyper: Hyper,
    /// Weight initialisation.
    pub weight_init: Init,
    /// Width of each hidden layer (`num_layers` = its length).
    pub hidden: Vec<usize>,
    /// Hidden-layer activation.
    pub activation: Activation,
    /// Seeds initialisation and batch order.
    pub seed: u64,
    /// Dropout rate after each hidden layer's activation (one per hidden layer; 0: none).
    pub dropout: Vec<f64>,
    /// Batch normalization before each hidden layer's activation.
    pub batch_norm: bool,
    /// The learning rate's schedule.
    pub schedule: LrSchedule,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            dataset: DatasetSpec::FashionMnist,
            epochs: 10,
            batch_size: 64,
            loss: Loss::CrossEntropy,
            optimizer: OptimizerKind::Adam,
            hyper: Hyper::default(),
            weight_init: Init::Xavier,
            hidden: vec![128; 3],
            activation: Activation::Relu,
            seed: 0,
            dropout: vec![0.0; 3],
            batch_norm: false,
            schedule: LrSchedule::default(),
        }
    }
}

impl TrainConfig {
    /// The resolved configuration as a JSON object with the parameter-table names.
    pub fn to_json(&self) -> Value {
        let hidden = if self.hidden.windows(2).all(|w| w[0] == w[1]) {
            Value::from(self.hidden[0])
        } else {
            Value::from(self.hidden.clone())
        };
        let h = &self.hyper;
        let dropout = if self.dropout.windows(2).all(|w| w[0] == w[1]) {
            Value::from(self.dropout.first().copied().unwrap_or(0.0))
        } else {
            Value::from(self.dropout.clone())
        };
        let sc = &self.schedule;
        serde_json::json!({
            "dataset": self.dataset.name(),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "loss": self.loss.name(),
            "optimizer": self.optimizer.name(),
            "learning_rate": h.learning_rate,
            "momentum": h.momentum,
            "beta": h.beta,
            "beta1": h.beta1,
            "beta2": h.beta2,
            "epsilon": h.epsilon,
            "weight_decay": h.weight_decay,
            "clip_norm": h.clip_norm,
            "weight_init": self.weight_init.name(),
            "num_layers": self.hidden.len(),
            "hidden_size": hidden,
            "activation": self.activation.name(),
            "seed": self.seed,
            "dropout": dropout,
            "batch_norm": self.batch_norm,
            "lr_schedule": sc.kind.name(),
            "lr_step_epochs": sc.step_epochs,
            "lr_gamma": sc.gamma,
            "lr_min": sc.min_lr,
            "warmup_epochs": sc.warmup_epochs,
        })
    }

    /// Parses and validates a JSON object of parameters (unknown names are refused).
    pub fn from_map(map: &serde_json::Map<String, Value>) -> Result<Self, ConfigError> {
        let mut b = ConfigBuilder::default();
        for (k, v) in map {
            b.set(k, v)?;
        }
        b.build()
    }
}

/// Raw parameters gathered from files, flags or the network, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    /// Canonical name → value; later sets override earlier ones.
    values: BTreeMap<&'static str, Value>,
    /// Values from a `preset` mapping: used where no explicit value is set.
    preset: BTreeMap<&'static str, Value>,
}

/// The parameter whose value is a mapping of other parameters (our extension, so one sweep can
/// run a list of whole configurations: `preset: {values: [{...}, {...}]}`). Parameters set
/// explicitly win over a preset's.
pub const PRESET: &str = "preset";

/// Turns `Batch-Size`, `batch-size` or `batch_size` into the canonical name (`keep_prob` is
/// its own name: it is read as `dropout`).
pub fn canonical_name(name: &str) -> Option<&'static str> {
    let k = name.trim().to_ascii_lowercase().replace('-', "_");
    PARAMS.iter().copied().chain([KEEP_PROB]).find(|p| *p == k)
}

impl ConfigBuilder {
    /// Sets a parameter. Fails on an unknown name (the message lists the known ones).
    pub fn set(&mut self, name: &str, value: &Value) -> Result<(), ConfigError> {
        if name.trim().eq_ignore_ascii_case(PRESET) {
            let Value::Object(map) = value else {
                return Err(ConfigError::new(
                    PRESET,
                    format!(
                        "expected a mapping of parameter names to values, got {}",
                        kind(value)
                    ),
                ));
            };
            self.preset.clear();
            for (k, v) in map {
                let key = canonical_name(k)
                    .ok_or_else(|| ConfigError::new(&format!("{PRESET}.{k}"), unknown()))?;
                self.preset.insert(key, v.clone());
            }
            return Ok(());
        }
        let key = canonical_name(name).ok_or_else(|| ConfigError::new(name, unknown()))?;
        self.values.insert(key, value.clone());
        Ok(())
    }

    /// Merges every key of a JSON/YAML object.
    pub fn merge_object(&mut self, v: &Value) -> Result<(), ConfigError> {
        let Value::Object(map) = v else {
            return Err(ConfigError::new(
                "config",
                format!(
                    "expected a mapping of parameter names to values, got {}",
                    kind(v)
                ),
            ));
        };
        for (k, v) in map {
            self.set(k, v)?;
        }
        Ok(())
    }

    /// Validates every value and fills defaults.
    pub fn build(&self) -> Result<TrainConfig, ConfigError> {
        let d = TrainConfig::default();
        let get = |k: &str| self.values.get(k).or_else(|| self.preset.get(k));
        let dataset = match get("dataset") {
            None => d.dataset,
            Some(v) => text("dataset", v)?
                .parse()
                .map_err(|e: String| ConfigError::new("dataset", e))?,
        };
        let epochs = int_in(get("epochs"), "epochs", 1, MAX_EPOCHS, d.epochs)?;
        let batch_size = int_in(get("batch_size"), "batch_size", 1, MAX_BATCH, d.batch_size)?;
        let loss = named(get("loss"), "loss", d.loss)?;
        let optimizer = named(get("optimizer"), "optimizer", d.optimizer)?;
        let weight_init = named(get("weight_init"), "weight_init", d.weight_init)?;
        let activation = named(get("activation"), "activation", d.activation)?;
        let dh = d.hyper;
        let hyper = Hyper {
            learning_rate: float(
                get("learning_rate"),
                "learning_rate",
                dh.learning_rate,
                Bound::Positive,
            )?,
            momentum: float(get("momentum"), "momentum", dh.momentum, Bound::Unit)?,
            beta: float(get("beta"), "beta", dh.beta, Bound::Unit)?,
            beta1: float(get("beta1"), "beta1", dh.beta1, Bound::Unit)?,
            beta2: float(get("beta2"), "beta2", dh.beta2, Bound::Unit)?,
            epsilon: float(get("epsilon"), "epsilon", dh.epsilon, Bound::Positive)?,
            weight_decay: float(
                get("weight_decay"),
                "weight_decay",
                dh.weight_decay,
                Bound::NonNegative,
            )?,
            clip_norm: float(
                get("clip_norm"),
                "clip_norm",
                dh.clip_norm,
                Bound::NonNegative,
            )?,
        };
        let num_layers = match get("num_layers") {
            None => None,
            Some(v) => Some(int_in(Some(v), "num_layers", 1, MAX_LAYERS, 0)?),
        };
        let hidden = match get("hidden_size") {
            None => vec![d.hidden[0]; num_layers.unwrap_or(d.hidden.len())],
            Some(v) => {
                let sizes = hidden_sizes(v)?;
                match (sizes.len(), num_layers) {
                    (1, Some(n)) => vec![sizes[0]; n],
                    (1, None) => vec![sizes[0]; d.hidden.len()],
                    (k, Some(n)) if k != n => {
                        return Err(ConfigError::new(
                            "hidden_size",
                            format!("lists {k} layer widths but num_layers is {n}; give one width, or one per layer"),
                        ))
                    }
                    (k, _) if k > MAX_LAYERS => {
                        return Err(ConfigError::new(
                            "hidden_size",
                            format!("lists {k} layers; at most {MAX_LAYERS} are allowed"),
                        ))
                    }
                    _ => sizes,
                }
            }
        };
        let seed = match get("seed") {
            None => d.seed,
            Some(v) => {
                let n = integer("seed", v)?;
                u64::try_from(n).map_err(|_| {
                    ConfigError::new("seed", format!("expected an integer ≥ 0, got {n}"))
                })?
            }
        };
        let dropout =
            match (get("dropout"), get(KEEP_PROB)) {
                (Some(_), Some(_)) => return Err(ConfigError::new(
                    KEEP_PROB,
                    "dropout and keep_prob say the same thing (dropout = 1 − keep_prob); give one",
                )),
                (Some(v), None) => rates("dropout", v, hidden.len(), |p| p)?,
                (None, Some(v)) => rates(KEEP_PROB, v, hidden.len(), |k| 1.0 - k)?,
                (None, None) => vec![0.0; hidden.len()],
            };
        let batch_norm = match get("batch_norm") {
            None => d.batch_norm,
            Some(v) => boolean("batch_norm", v)?,
        };
        let ds = d.schedule;
        let schedule = LrSchedule {
            kind: named(get("lr_schedule"), "lr_schedule", ds.kind)?,
            step_epochs: int_in(
                get("lr_step_epochs"),
                "lr_step_epochs",
                1,
                MAX_EPOCHS,
                ds.step_epochs,
            )?,
            gamma: float(get("lr_gamma"), "lr_gamma", ds.gamma, Bound::Positive)?,
            min_lr: float(get("lr_min"), "lr_min", ds.min_lr, Bound::NonNegative)?,
            warmup_epochs: float(
                get("warmup_epochs"),
                "warmup_epochs",
                ds.warmup_epochs,
                Bound::NonNegative,
            )?,
        };
        if schedule.kind == Schedule::Cosine && schedule.min_lr > hyper.learning_rate {
            return Err(ConfigError::new(
                "lr_min",
                format!(
                    "expected at most the learning rate ({}) for the cosine schedule to end at, got {}",
                    hyper.learning_rate, schedule.min_lr
                ),
            ));
        }
        Ok(TrainConfig {
            dataset,
            epochs,
            batch_size,
            loss,
            optimizer,
            hyper,
            weight_init,
            hidden,
            activation,
            seed,
            dropout,
            batch_norm,
            schedule,
        })
    }
}

fn unknown() -> String {
    format!(
        "unknown parameter; expected one of {}, {KEEP_PROB}",
        PARAMS.join(", ")
    )
}

/// What a JSON value is (`a number`, `a mapping`, …), for error messages that say what was
/// found instead.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn text<'a>(field: &str, v: &'a Value) -> Result<&'a str, ConfigError> {
    v.as_str()
        .ok_or_else(|| ConfigError::new(field, format!("expected a string, got {}", kind(v))))
}

fn named<E: std::str::FromStr<Err = String>>(
    v: Option<&Value>,
    field: &str,
    default: E,
) -> Result<E, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) => text(field, v)?
            .parse()
            .map_err(|e| ConfigError::new(field, e)),
    }
}

/// An integer from a JSON integer, an integral float (YAML `1e3`), or a numeric string.
fn integer(field: &str, v: &Value) -> Result<i64, ConfigError> {
    let bad = || ConfigError::new(field, format!("expected an integer, got {}", show(v)));
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Ok(f as i64)
                } else {
                    Err(bad())
                }
            } else {
                Err(bad())
            }
        }
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        other => kind(other).to_string(),
    }
}

fn int_in(
    v: Option<&Value>,
    field: &str,
    min: usize,
    max: usize,
    default: usize,
) -> Result<usize, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let n = integer(field, v)?;
    if n < min as i64 || n > max as i64 {
        return Err(ConfigError::new(
            field,
            format!("expected an integer from {min} to {max}, got {n}"),
        ));
    }
    Ok(n as usize)
}

#[derive(Clone, Copy)]
enum Bound {
    Positive,
    NonNegative,
    Unit,
}

fn float(v: Option<&Value>, field: &str, default: f64, bound: Bound) -> Result<f64, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let x = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| ConfigError::new(field, format!("expected a number, got {}", show(v))))?;
    let (ok, want) = match bound {
        Bound::Positive => (x.is_finite() && x > 0.0, "a finite number > 0"),
        Bound::NonNegative => (x.is_finite() && x >= 0.0, "a finite number ≥ 0"),
        Bound::Unit => ((0.0..1.0).contains(&x), "a number in [0, 1)"),
    };
    if ok {
        Ok(x)
    } else {
        Err(ConfigError::new(field, format!("expected {want}, got {x}")))
    }
}

/// A boolean from `true`/`false`, `1`/`0`, or the strings `true`, `yes`, `on`, `1` (and their
/// opposites), in any case.
fn boolean(field: &str, v: &Value) -> Result<bool, ConfigError> {
    let bad = || ConfigError::new(field, format!("expected true or false, got {}", show(v)));
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Ok(false),
            Some(1.0) => Ok(true),
            _ => Err(bad()),
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// One rate per hidden layer (`layers` of them) from one number, a list, or a comma-separated
/// string, each mapped by `to_dropout` into a dropout rate that must lie in [0, 1).
fn rates(
    field: &str,
    v: &Value,
    layers: usize,
    to_dropout: fn(f64) -> f64,
) -> Result<Vec<f64>, ConfigError> {
    let want = if field == KEEP_PROB {
        "a probability in (0, 1] (or a list, one per hidden layer)"
    } else {
        "a rate in [0, 1) (or a list, one per hidden layer)"
    };
    let one = |v: &Value| -> Result<f64, ConfigError> {
        let x = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match x.map(to_dropout) {
            Some(p) if (0.0..1.0).contains(&p) => Ok(p),
            _ => Err(ConfigError::new(
                field,
                format!("expected {want}, got {}", show(v)),
            )),
        }
    };
    let list: Vec<f64> = match v {
        Value::Array(items) => items.iter().map(one).collect::<Result<_, _>>()?,
        Value::String(s) if s.contains(',') => s
            .split(',')
            .map(|p| one(&Value::String(p.trim().to_string())))
            .collect::<Result<_, _>>()?,
        _ => vec![one(v)?],
    };
    match list.len() {
        1 => Ok(vec![list[0]; layers]),
        n if n == layers => Ok(list),
        n => Err(ConfigError::new(
            field,
            format!("lists {n} rates for {layers} hidden layers; give one rate, or one per layer"),
        )),
    }
}

fn hidden_sizes(v: &Value) -> Result<Vec<usize>, ConfigError> {
    let one = |v: &Value| -> Result<usize, ConfigError> {
        let n = integer("hidden_size", v)?;
        if n < 1 || n > MAX_HIDDEN as i64 {
            return Err(ConfigError::new(
                "hidden_size",
                format!("expected layer widths from 1 to {MAX_HIDDEN}, got {n}"),
            ));
        }
        Ok(n as usize)
    };
    match v {
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::String(s) if s.contains(',') => s
            .split(',')
            .map(|p| one(&Value::String(p.trim().to_string())))
            .collect(),
        Value::Array(_) => Err(ConfigError::new(
            "hidden_size",
            "expected an integer ≥ 1 or a non-empty list of them, got an empty list",
        )),
        _ => Ok(vec![one(v)?]),
    }
}

impl fmt::Display for TrainConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(v: Value) -> Result<TrainConfig, ConfigError> {
        let mut b = ConfigBuilder::default();
        b.merge_object(&v)?;
        b.build()
    }

    #[test]
    fn a_preset_fills_in_parameters_and_explicit_ones_win() {
        let c = build(json!({
            "preset": {"num_layers": 2, "hidden-size": 256, "optimizer": "sgd"},
            "optimizer": "adam"
        }))
        .unwrap();
        assert_eq!((c.hidden.len(), c.hidden[0]), (2, 256));
        assert_eq!(c.optimizer, crate::names::OptimizerKind::Adam);
        let e = build(json!({"preset": {"width": 3}})).unwrap_err();
        assert_eq!(e.field, "preset.width");
        let e = build(json!({"preset": [1, 2]})).unwrap_err();
        assert_eq!(e.field, "preset");
    }

    #[test]
    fn defaults_match_the_parameter_table() {
        let c = build(json!({})).unwrap();
        assert_eq!(c, TrainConfig::default());
        let j = c.to_json();
        for p in PARAMS {
            assert!(j.get(p).is_some(), "{p} missing from {j}");
        }
        assert_eq!(j["hidden_size"], 128);
        assert_eq!(j["num_layers"], 3);
    }

    #[test]
    fn original_spellings_and_kebab_names() {
        let c = build(json!({
            "weight-init": "Xavier", "activation": "ReLU", "dataset": "fashion_mnist",
            "loss": "mean_squared_error", "optimizer": "NADAM", "num_layers": 4,
            "hidden_size": "64", "learning_rate": "1e-4", "epochs": 5.0, "seed": 3
        }))
        .unwrap();
        assert_eq!(c.activation, Activation::Relu);
        assert_eq!(c.loss, Loss::MeanSquaredError);
        assert_eq!(c.hidden, vec![64; 4]);
        assert_eq!(c.epochs, 5);
        assert_eq!(c.hyper.learning_rate, 1e-4);
        // The resolved config round-trips.
        let again = TrainConfig::from_map(c.to_json().as_object().unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn per_layer_widths() {
        let c = build(json!({"hidden_size": [256, 128, 64]})).unwrap();
        assert_eq!(c.hidden, vec![256, 128, 64]);
        assert_eq!(c.to_json()["num_layers"], 3);
        let c = build(json!({"hidden_size": "32,16"})).unwrap();
        assert_eq!(c.hidden, vec![32, 16]);
        let e = build(json!({"hidden_size": [8, 8], "num_layers": 3})).unwrap_err();
        assert_eq!(e.field, "hidden_size");
    }

    #[test]
    fn dropout_batch_norm_and_schedules() {
        let c = build(json!({
            "num_layers": 2, "dropout": [0.1, 0.5], "batch_norm": "yes",
            "lr_schedule": "Cosine", "lr_min": 1e-5, "warmup_epochs": 0.5
        }))
        .unwrap();
        assert_eq!(c.dropout, vec![0.1, 0.5]);
        assert!(c.batch_norm);
        assert_eq!(c.schedule.kind, Schedule::Cosine);
        assert_eq!((c.schedule.min_lr, c.schedule.warmup_epochs), (1e-5, 0.5));
        let again = TrainConfig::from_map(c.to_json().as_object().unwrap()).unwrap();
        assert_eq!(again, c);
        // One rate for every layer; keep_prob is 1 − dropout.
        let c = build(json!({"num_layers": 3, "keep_prob": 0.75, "batch_norm": 0})).unwrap();
        assert_eq!(c.dropout, vec![0.25; 3]);
        assert!(!c.batch_norm);
        assert_eq!(c.to_json()["dropout"], 0.25);
        let c = build(json!({"dropout": "0.2, 0.3, 0.4"})).unwrap();
        assert_eq!(c.dropout, vec![0.2, 0.3, 0.4]);
        // Off by default: the reference model is unchanged.
        let d = build(json!({})).unwrap();
        assert_eq!((d.dropout.clone(), d.batch_norm), (vec![0.0; 3], false));
        assert_eq!(d.schedule, LrSchedule::default());
    }

    #[test]
    fn errors_name_the_field_and_what_was_expected() {
        let cases = [
            (
                json!({"optimizer": "lbfgs"}),
                "optimizer",
                "sgd, momentum, nag",
            ),
            (json!({"hidden_size": 0}), "hidden_size", "from 1"),
            (json!({"learning_rate": -0.1}), "learning_rate", "> 0"),
            (json!({"momentum": 1.0}), "momentum", "[0, 1)"),
            (json!({"epochs": 2.5}), "epochs", "integer"),
            (json!({"batch_size": "big"}), "batch_size", "integer"),
            (json!({"weight_decay": -1}), "weight_decay", "≥ 0"),
            (json!({"epsilon": 0}), "epsilon", "> 0"),
            (json!({"seed": -1}), "seed", "≥ 0"),
            (json!({"dataset": 3}), "dataset", "string"),
            (json!({"hidden_size": []}), "hidden_size", "empty"),
            (json!({"dropout": 1.0}), "dropout", "[0, 1)"),
            (
                json!({"dropout": [0.1, 0.2]}),
                "dropout",
                "2 rates for 3 hidden layers",
            ),
            (json!({"keep_prob": 0}), "keep_prob", "(0, 1]"),
            (
                json!({"keep_prob": 0.5, "dropout": 0.5}),
                "keep_prob",
                "give one",
            ),
            (
                json!({"batch_norm": "maybe"}),
                "batch_norm",
                "true or false",
            ),
            (
                json!({"lr_schedule": "exp"}),
                "lr_schedule",
                "constant, step, cosine",
            ),
            (json!({"lr_step_epochs": 0}), "lr_step_epochs", "from 1"),
            (json!({"lr_gamma": 0}), "lr_gamma", "> 0"),
            (
                json!({"lr_schedule": "cosine", "lr_min": 0.1}),
                "lr_min",
                "at most",
            ),
            (json!({"warmup_epochs": -1}), "warmup_epochs", "≥ 0"),
            (
                json!({"learning_rte": 0.1}),
                "learning_rte",
                "unknown parameter",
            ),
        ];
        for (v, field, msg) in cases {
            let e = build(v.clone()).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e}");
            assert!(e.to_string().contains(msg), "{v}: {e}");
        }
        assert!(build(json!([1, 2]))
            .unwrap_err()
            .message
            .contains("mapping"));
    }
}
