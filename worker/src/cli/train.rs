//! `worker train`: one trial from the command line, with a progress bar and a report, or JSON
//! lines for scripts.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::CliError;
use crate::data::{self, Split};
use crate::train::{
    self, Control, EpochMetrics, Observer, Status, TrainConfig, TrialOptions, TrialResult,
};

/// Train one MLP and report per-epoch metrics, test accuracy and the confusion matrix.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// mnist, fashion_mnist, or a path to a directory with the four IDX files [default: fashion_mnist]
    #[arg(long, value_name = "NAME|PATH")]
    pub dataset: Option<String>,
    /// Passes over the training images [default: 10]
    #[arg(long)]
    pub epochs: Option<String>,
    /// Images per gradient step [default: 64]
    #[arg(long, alias = "batch_size")]
    pub batch_size: Option<String>,
    /// cross_entropy or mean_squared_error [default: cross_entropy]
    #[arg(long)]
    pub loss: Option<String>,
    /// sgd, momentum, nag, rmsprop, adam, nadam, adamw or adagrad [default: adam]
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Learning rate, > 0 [default: 0.001]
    #[arg(long, alias = "learning_rate", alias = "lr")]
    pub learning_rate: Option<String>,
    /// Momentum μ for momentum and nag, in [0, 1) [default: 0.9]
    #[arg(long)]
    pub momentum: Option<String>,
    /// β for rmsprop, in [0, 1) [default: 0.9]
    #[arg(long)]
    pub beta: Option<String>,
    /// β₁ for adam, nadam and adamw, in [0, 1) [default: 0.9]
    #[arg(long)]
    pub beta1: Option<String>,
    /// β₂ for adam, nadam and adamw, in [0, 1) [default: 0.999]
    #[arg(long)]
    pub beta2: Option<String>,
    /// ε for rmsprop, adam, nadam, adamw and adagrad, > 0 [default: 1e-8]
    #[arg(long)]
    pub epsilon: Option<String>,
    /// L2 weight decay λ on weights, ≥ 0 [default: 0]
    #[arg(long, alias = "weight_decay")]
    pub weight_decay: Option<String>,
    /// Largest L2 norm of the gradient (a longer one is scaled down to it), ≥ 0; 0: off
    /// [default: 0]
    #[arg(long, alias = "clip_norm")]
    pub clip_norm: Option<String>,
    /// random, xavier or he [default: xavier]
    #[arg(long, alias = "weight_init")]
    pub weight_init: Option<String>,
    /// Number of hidden layers [default: 3]
    #[arg(long, alias = "num_layers")]
    pub num_layers: Option<String>,
    /// Width of each hidden layer, or a comma-separated width per layer [default: 128]
    #[arg(long, alias = "hidden_size")]
    pub hidden_size: Option<String>,
    /// identity, sigmoid, tanh, relu, leaky_relu, gelu or silu [default: relu]
    #[arg(long)]
    pub activation: Option<String>,
    /// Seeds initialisation and batch order [default: 0]
    #[arg(long)]
    pub seed: Option<String>,
    /// Dropout rate after each hidden layer, in [0, 1), or a comma-separated rate per layer
    /// [default: 0]
    #[arg(long)]
    pub dropout: Option<String>,
    /// Another way to give --dropout: the probability of keeping a unit, in (0, 1]
    /// (dropout = 1 − keep_prob)
    #[arg(long, alias = "keep_prob")]
    pub keep_prob: Option<String>,
    /// Batch normalization before each hidden layer's activation (true or false; the flag
    /// alone: true) [default: false]
    #[arg(long, alias = "batch_norm", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub batch_norm: Option<String>,
    /// Learning-rate schedule after the warm-up: constant, step or cosine [default: constant]
    #[arg(long, alias = "lr_schedule")]
    pub lr_schedule: Option<String>,
    /// step: epochs between two decays of the learning rate [default: 10]
    #[arg(long, alias = "lr_step_epochs")]
    pub lr_step_epochs: Option<String>,
    /// step: the factor of each decay, > 0 [default: 0.1]
    #[arg(long, alias = "lr_gamma")]
    pub lr_gamma: Option<String>,
    /// cosine: the learning rate at the end, ≥ 0 [default: 0]
    #[arg(long, alias = "lr_min")]
    pub lr_min: Option<String>,
    /// Epochs (a fraction allowed) over which the learning rate rises linearly from η/steps to
    /// η [default: 0]
    #[arg(long, alias = "warmup_epochs")]
    pub warmup_epochs: Option<String>,

    /// JSON or YAML file of parameters (same names); flags override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Threads for evaluation (training itself runs on one thread per trial) [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Train on only the first N training images (validation is unchanged)
    #[arg(long, alias = "train_samples", value_name = "N")]
    pub train_samples: Option<usize>,
    /// Directory holding mnist/ and fashion-mnist/ [default: the repository's data/]
    #[arg(
        long,
        alias = "data_dir",
        env = "SWEEP_DATA_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// Write the test confusion matrix to FILE (.json or .csv)
    #[arg(long, alias = "confusion_out", value_name = "FILE")]
    pub confusion_out: Option<PathBuf>,
    /// Print JSON lines on stdout (one per epoch, then a summary) and nothing else
    #[arg(long)]
    pub json: bool,
    /// Save the trained network to DIR (model.safetensors and its card model.json) for
    /// `worker evaluate` and `worker predict`, NumPy or PyTorch
    #[arg(long, alias = "save_model", value_name = "DIR")]
    pub save_model: Option<PathBuf>,
}

impl TrainArgs {
    /// The flags that carry parameters, as (snake_case name, value).
    fn params(&self) -> [(&'static str, &Option<String>); 26] {
        // In the order of train::config::PARAMS, then keep_prob: every parameter has its flag.
        let values = [
            &self.dataset,
            &self.epochs,
            &self.batch_size,
            &self.loss,
            &self.optimizer,
            &self.learning_rate,
            &self.momentum,
            &self.beta,
            &self.beta1,
            &self.beta2,
            &self.epsilon,
            &self.weight_decay,
            &self.clip_norm,
            &self.weight_init,
            &self.num_layers,
            &self.hidden_size,
            &self.activation,
            &self.seed,
            &self.dropout,
            &self.batch_norm,
            &self.lr_schedule,
            &self.lr_step_epochs,
            &self.lr_gamma,
            &self.lr_min,
            &self.warmup_epochs,
            &self.keep_prob,
        ];
        let names = train::config::PARAMS
            .iter()
            .copied()
            .chain([train::config::KEEP_PROB]);
        let mut pairs = names.zip(values);
        std::array::from_fn(|_| pairs.next().expect("one flag per parameter"))
    }

    /// Resolves the configuration: defaults, then the config file, then the flags.
    pub fn resolve(&self) -> Result<TrainConfig, CliError> {
        let mut b = train::ConfigBuilder::default();
        let mut from_file = Vec::new();
        if let Some(path) = &self.config {
            let v = read_config_file(path)?;
            b.merge_object(&v)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
            if let Value::Object(m) = &v {
                from_file.extend(m.keys().filter_map(|k| train::config::canonical_name(k)));
            }
        }
        for (name, v) in self.params() {
            if let Some(s) = v {
                b.set(name, &Value::String(s.clone()))
                    .map_err(|e| CliError::Usage(e.to_string()))?;
            }
        }
        b.build().map_err(|e| {
            let flag_given = self
                .params()
                .iter()
                .any(|(n, v)| *n == e.field && v.is_some());
            let origin = match &self.config {
                Some(p) if !flag_given && from_file.contains(&e.field.as_str()) => {
                    format!("{}: ", p.display())
                }
                _ => String::new(),
            };
            CliError::Usage(format!(
                "{origin}invalid value for --{} ({}): {}",
                e.field.replace('_', "-"),
                e.field,
                e.message
            ))
        })
    }
}

/// Reads a JSON or YAML parameter file into a JSON value.
pub fn read_config_file(path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("--config {}: cannot read: {e}", path.display())))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let v: Value = if ext == "json" {
        serde_json::from_str(&text).map_err(|e| {
            CliError::Usage(format!("--config {}: not valid JSON: {e}", path.display()))
        })?
    } else {
        serde_saphyr::from_str(&text).map_err(|e| {
            CliError::Usage(format!(
                "--config {}: not valid YAML or JSON: {e}",
                path.display()
            ))
        })?
    };
    Ok(v)
}

/// Runs `worker train`.
pub fn run(args: &TrainArgs) -> Result<(), CliError> {
    let cfg = args.resolve()?;
    if let Some(p) = &args.confusion_out {
        confusion_format(p)?;
    }
    // Checked before training, not after.
    if let Some(dir) = &args.save_model {
        std::fs::create_dir_all(dir).map_err(|e| {
            CliError::Usage(format!(
                "--save-model {}: cannot create it: {e}",
                dir.display()
            ))
        })?;
    }
    if let Some(t) = args.threads {
        if t == 0 {
            return Err(CliError::Usage(
                "invalid value for --threads: expected an integer ≥ 1, got 0".into(),
            ));
        }
        // Ignore the error of a pool that already exists (only possible when embedded).
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(data::default_data_dir);
    let ds = data::load(&cfg.dataset, &data_dir).map_err(|e| CliError::Data(e.to_string()))?;
    let split = Split::new(ds.train.len(), args.train_samples);
    if !args.json {
        let mut sizes = vec![ds.features.to_string()];
        sizes.extend(cfg.hidden.iter().map(|h| h.to_string()));
        sizes.push(ds.classes.len().to_string());
        println!(
            "training {} MLP ({}, {}) on {}: {} train / {} validation / {} test images",
            sizes.join("-"),
            cfg.activation,
            cfg.weight_init,
            ds.name,
            split.train.len(),
            split.val.len(),
            ds.test.len()
        );
        println!(
            "{} lr={} batch={} loss={} weight_decay={} epochs={} seed={}",
            cfg.optimizer,
            cfg.hyper.learning_rate,
            cfg.batch_size,
            cfg.loss,
            cfg.hyper.weight_decay,
            cfg.epochs,
            cfg.seed
        );
    }
    let mut obs = CliObserver::new(&cfg, args.json);
    let opts = TrialOptions {
        train_samples: args.train_samples,
        ..TrialOptions::default()
    };
    let res =
        train::run_trial(&cfg, &ds, &opts, &mut obs).map_err(|e| CliError::Usage(e.to_string()))?;
    obs.finish();
    if let (Some(p), Some(test)) = (&args.confusion_out, &res.test) {
        write_confusion(p, &res.classes, &test.confusion)?;
    }
    report(&cfg, &res, args.json);
    if let (Some(dir), Some(net)) = (&args.save_model, &res.net) {
        let card = crate::model::card(&cfg, &ds, &res, net);
        crate::model::save(dir, net, card).map_err(|e| CliError::Other(e.to_string()))?;
        if !args.json {
            println!("saved the model to {}", dir.display());
        }
    } else if let Some(dir) = &args.save_model {
        return Err(CliError::Other(format!(
            "--save-model {}: not saved: the trial {} (no test metrics)",
            dir.display(),
            res.status.name()
        )));
    }
    Ok(())
}

fn confusion_format(p: &Path) -> Result<&'static str, CliError> {
    match p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => Ok("json"),
        Some("csv") => Ok("csv"),
        _ => Err(CliError::Usage(format!(
            "invalid value for --confusion-out: {} must end in .json or .csv",
            p.display()
        ))),
    }
}

/// Writes a confusion matrix as JSON (`labels`, `matrix`) or CSV (a header of class names).
pub fn write_confusion(p: &Path, classes: &[String], m: &[Vec<u64>]) -> Result<(), CliError> {
    let text = match confusion_format(p)? {
        "json" => {
            let v = json!({ "labels": classes, "matrix": m, "rows": "true class", "columns": "predicted class" });
            serde_json::to_string_pretty(&v).map_err(|e| CliError::Other(e.to_string()))? + "\n"
        }
        _ => {
            let mut s = String::from("true\\predicted");
            for c in classes {
                s.push(',');
                s.push_str(&csv_field(c));
            }
            s.push('\n');
            for (c, row) in classes.iter().zip(m) {
                s.push_str(&csv_field(c));
                for v in row {
                    s.push_str(&format!(",{v}"));
                }
                s.push('\n');
            }
            s
        }
    };
    std::fs::write(p, text).map_err(|e| {
        CliError::Usage(format!(
            "--confusion-out {}: cannot write: {e}",
            p.display()
        ))
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

struct CliObserver {
    json: bool,
    epochs: usize,
    bar: ProgressBar,
}

impl CliObserver {
    fn new(cfg: &TrainConfig, json: bool) -> Self {
        let bar = if json {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "epoch {msg} [{bar:30}] {pos}/{len} batches {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        };
        CliObserver {
            json,
            epochs: cfg.epochs,
            bar,
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for CliObserver {
    fn on_batch(&mut self, epoch: usize, batch: usize, batches: usize) {
        if batch == 1 {
            self.bar.set_length(batches as u64);
            self.bar.reset();
            self.bar.set_message(format!("{epoch}/{}", self.epochs));
        }
        self.bar.set_position(batch as u64);
    }

    fn on_epoch(&mut self, m: &EpochMetrics) -> Control {
        if self.json {
            println!("{}", json!(m));
        } else {
            self.bar.suspend(|| {
                println!(
                    "epoch {:>3}/{}  loss {:.4}  accuracy {:.4}  val_loss {:.4}  val_accuracy {:.4}  {:.2}s ({:.0} samples/s)",
                    m.epoch, self.epochs, m.loss, m.accuracy, m.val_loss, m.val_accuracy, m.epoch_seconds, m.samples_per_second
                );
            });
        }
        let _ = std::io::stdout().flush();
        Control::Continue
    }
}

/// Peak resident memory of this process in bytes (Linux), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn report(cfg: &TrainConfig, res: &TrialResult, as_json: bool) {
    let test_loss = res.test.as_ref().map(|t| t.loss);
    let test_acc = res.test.as_ref().map(|t| t.accuracy);
    if as_json {
        let v = json!({
            "status": res.status.name(),
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "confusion_matrix": res.test.as_ref().map(|t| &t.confusion),
            "labels": res.classes,
            "config": cfg.to_json(),
            "diverged_at": res.diverged_at.map(|(e, b)| json!({"epoch": e, "batch": b})),
            "train_samples": res.train_samples,
            "seconds": res.seconds,
            "peak_rss_bytes": peak_rss_bytes(),
        });
        println!("{v}");
        return;
    }
    match res.status {
        Status::Diverged => {
            let (e, b) = res.diverged_at.unwrap_or((0, 0));
            println!("status: diverged (the loss became NaN or infinite at epoch {e}, batch {b}); try a smaller learning rate");
        }
        s => println!("status: {}", s.name()),
    }
    if let Some(t) = &res.test {
        println!("test_loss {:.4}  test_accuracy {:.4}", t.loss, t.accuracy);
        println!();
        print!(
            "{}",
            sweep_trainer::confusion::format(&res.classes, &t.confusion)
        );
    }
    if let Some(rss) = peak_rss_bytes() {
        println!(
            "\n{:.1}s in all, peak memory {:.0} MB",
            res.seconds,
            rss as f64 / 1e6
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use sweep_trainer::command::command_line;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }

    #[test]
    fn a_trials_command_line_trains_the_same_config() {
        let params = json!({
            "learning_rate": 0.000968, "optimizer": "nadam", "hidden_size": [64, 32],
            "num_layers": 2, "batch_size": 32, "activation": "ReLU", "epochs": 3,
        });
        let Value::Object(map) = &params else {
            unreachable!()
        };
        let line = command_line(map, 1234, Some(5000));
        assert!(line.starts_with("worker train --"), "{line}");
        assert!(line.ends_with("--seed 1234 --train-samples 5000"), "{line}");
        let words: Vec<&str> = line.split(' ').skip(1).collect();
        let cli =
            Cli::try_parse_from(std::iter::once("train").chain(words.iter().skip(1).copied()))
                .unwrap();
        let mut with_seed = map.clone();
        with_seed.insert("seed".into(), json!(1234));
        let want = TrainConfig::from_map(&with_seed).unwrap();
        assert_eq!(cli.train.resolve().unwrap(), want);
        assert_eq!(cli.train.train_samples, Some(5000));
        // The trial's own seed wins, as it does in a sweep.
        let mut own = map.clone();
        own.insert("seed".into(), json!(7));
        assert!(command_line(&own, 1234, None).ends_with("--seed 7"));
    }
}
