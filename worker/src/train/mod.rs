//! The training loop of one trial: batches, steps, per-epoch metrics, evaluation, the
//! confusion matrix, and the hooks an agent needs (per-epoch callback that can stop the
//! trial, a cancel flag checked between batches).
//!
//! Training runs on the calling thread (single-threaded GEMM, so trials scale by running
//! several at once); evaluation fans out over rayon in fixed chunks whose sums are combined in
//! chunk order, so metrics are bit-identical whatever the thread count.

pub use sweep_trainer::config;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::{Dataset, Split};
use crate::nn::{kernels, Extras, Loss, Mlp, Mode, Workspace};
use crate::optim::schedule::Rates;
use crate::optim::Optimizer;
pub use config::{ConfigBuilder, ConfigError, TrainConfig};

/// Images per evaluation chunk. Fixed (not derived from the thread count) so that sums are
/// formed in the same order on any machine.
pub const EVAL_CHUNK: usize = 1000;

/// Metrics of one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (data term, without weight decay).
    pub loss: f64,
    /// Training accuracy over the epoch's batches, as the weights were when each was seen.
    pub accuracy: f64,
    /// Loss on the validation split after the epoch.
    pub val_loss: f64,
    /// Accuracy on the validation split after the epoch.
    pub val_accuracy: f64,
    /// Wall time of the epoch: training and validation.
    pub epoch_seconds: f64,
    /// Training images per second (training time only).
    pub samples_per_second: f64,
}

/// Loss, accuracy and confusion matrix on a set of images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Mean data loss.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every epoch ran.
    Finished,
    /// The loss became NaN or infinite; training stopped there.
    Diverged,
    /// The observer asked to stop after an epoch (early termination); test metrics exist.
    Stopped,
    /// The cancel flag was raised; the trial ended between batches without a test pass.
    Cancelled,
}

impl Status {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Finished => "finished",
            Status::Diverged => "diverged",
            Status::Stopped => "stopped",
            Status::Cancelled => "cancelled",
        }
    }
}

/// Everything a trial produced.
#[derive(Debug, Clone)]
pub struct TrialResult {
    /// How it ended.
    pub status: Status,
    /// Where it diverged, as (epoch, batch), both 1-based.
    pub diverged_at: Option<(usize, usize)>,
    /// One entry per completed epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Test-set metrics, when the trial finished or was stopped.
    pub test: Option<Evaluation>,
    /// Class names, in label order (the confusion matrix's rows and columns).
    pub classes: Vec<String>,
    /// Training images per epoch.
    pub train_samples: usize,
    /// Wall time of the whole trial, including the test pass.
    pub seconds: f64,
    /// The trained network, when the trial finished or was stopped (it has test metrics).
    pub net: Option<Mlp<f32>>,
}

/// What an observer asks after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// End the trial now, then evaluate on the test set (status `stopped`).
    Stop,
}

/// Receives progress from a running trial (a progress bar, an agent's Report stream).
pub trait Observer {
    /// Called after every batch, with 1-based epoch and batch numbers.
    fn on_batch(&mut self, _epoch: usize, _batch: usize, _batches: usize) {}
    /// Called after every epoch's validation; may stop the trial.
    fn on_epoch(&mut self, _metrics: &EpochMetrics) -> Control {
        Control::Continue
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;
impl Observer for NoObserver {}

/// A flag another thread raises to end a trial between batches.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A lowered flag.
    pub fn new() -> Self {
        Self::default()
    }
    /// Raises the flag; the trial ends after its current batch.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether the flag is raised.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Run-time options that are not hyperparameters.
#[derive(Debug, Clone, Default)]
pub struct TrialOptions {
    /// Train on only the first N training images (validation is unchanged).
    pub train_samples: Option<usize>,
    /// Raised by another thread to end the trial.
    pub cancel: Option<Cancel>,
}

/// Errors that prevent a trial from running at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The data set has no training images left after `train_samples`.
    #[error("train_samples: no training images selected (the data set has {available})")]
    NoTrainingData {
        /// Training images in the split.
        available: usize,
    },
    /// More classes than the engine's label type holds.
    #[error("the data set has {0} classes; at most 256 are supported")]
    TooManyClasses(usize),
}

/// Trains one network as `cfg` says, on `data`, reporting to `obs`.
pub fn run_trial(
    cfg: &TrainConfig,
    data: &Dataset,
    opts: &TrialOptions,
    obs: &mut dyn Observer,
) -> Result<TrialResult, TrainError> {
    let start = Instant::now();
    let classes = data.classes.len();
    if classes > 256 {
        return Err(TrainError::TooManyClasses(classes));
    }
    let split = Split::new(data.train.len(), opts.train_samples);
    if split.train.is_empty() {
        return Err(TrainError::NoTrainingData {
            available: Split::new(data.train.len(), None).train.len(),
        });
    }
    let mut sizes = vec![data.features];
    sizes.extend(&cfg.hidden);
    sizes.push(classes);

    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let extras = Extras {
        batch_norm: cfg.batch_norm,
        dropout: cfg.dropout.clone(),
    };
    let mut net =
        Mlp::<f32>::with_extras(&sizes, cfg.activation, cfg.weight_init, &extras, &mut rng);
    // Dropout's masks come from a stream of their own, so that turning dropout on leaves the
    // weights and the batch order as they were.
    let mut masks = ChaCha8Rng::seed_from_u64(cfg.seed);
    masks.set_stream(1);
    let decayed = net.layers().iter().map(|l| l.w_range()).collect();
    let mut opt = Optimizer::<f32>::new(cfg.optimizer, cfg.hyper, net.num_params(), decayed);
    let batch = cfg.batch_size.min(split.train.len());
    let mut ws = Workspace::new(&net, batch);
    let mut grads = vec![0.0f32; net.num_params()];
    let mut labels = vec![0u8; batch];
    let mut order = split.train.clone();
    let n = order.len();
    let batches = n.div_ceil(batch);
    let rates = Rates::new(cfg.hyper.learning_rate, cfg.schedule, batches, cfg.epochs);
    let f = data.features;

    let mut result = TrialResult {
        status: Status::Finished,
        diverged_at: None,
        epochs: Vec::with_capacity(cfg.epochs),
        test: None,
        classes: data.classes.clone(),
        train_samples: n,
        seconds: 0.0,
        net: None,
    };

    'epochs: for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0f64;
        let mut correct = 0usize;
        for (bi, idx) in order.chunks(batch).enumerate() {
            let rows = idx.len();
            {
                let mut input = ws.input_mut(rows);
                let dst = input.as_slice_mut().expect("workspace rows are contiguous");
                for ((row, &i), lab) in dst.chunks_exact_mut(f).zip(idx).zip(labels.iter_mut()) {
                    let i = i as usize;
                    kernels::bytes_to_unit(row, &data.train.images[i * f..(i + 1) * f]);
                    *lab = data.train.labels[i];
                }
            }
            let st = net.forward_loss(&mut ws, rows, &labels, cfg.loss, Mode::Train(&mut masks));
            if !st.loss_sum.is_finite() {
                result.status = Status::Diverged;
                result.diverged_at = Some((epoch, bi + 1));
                break 'epochs;
            }
            loss_sum += st.loss_sum;
            correct += st.correct;
            net.backward(&mut ws, rows, &mut grads);
            net.update_stats(&ws, rows);
            opt.set_learning_rate(rates.at(opt.steps()));
            opt.step(&mut net.params, &mut grads);
            obs.on_batch(epoch, bi + 1, batches);
            if opts.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                result.status = Status::Cancelled;
                break 'epochs;
            }
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let val = evaluate(
            &net,
            cfg.loss,
            &data.train.images,
            &data.train.labels,
            Some(&split.val),
            f,
            classes,
        );
        let m = EpochMetrics {
            epoch,
            loss: loss_sum / n as f64,
            accuracy: correct as f64 / n as f64,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            epoch_seconds: t0.elapsed().as_secs_f64(),
            samples_per_second: n as f64 / train_secs.max(1e-9),
        };
        result.epochs.push(m);
        if !m.loss.is_finite() || !(split.val.is_empty() || m.val_loss.is_finite()) {
            result.status = Status::Diverged;
            result.diverged_at = Some((epoch, batches));
            break;
        }
        if obs.on_epoch(&m) == Control::Stop {
            result.status = Status::Stopped;
            break;
        }
    }
    if matches!(result.status, Status::Finished | Status::Stopped) {
        result.test = Some(evaluate(
            &net,
            cfg.loss,
            &data.test.images,
            &data.test.labels,
            None,
            f,
            classes,
        ));
        result.net = Some(net);
    }
    result.seconds = start.elapsed().as_secs_f64();
    Ok(result)
}

/// Evaluates `net` on the images selected by `idx` (all when `None`), in parallel on the
/// current rayon pool, with a deterministic reduction order.
pub fn evaluate(
    net: &Mlp<f32>,
    loss: Loss,
    images: &[u8],
    labels: &[u8],
    idx: Option<&[u32]>,
    features: usize,
    classes: usize,
) -> Evaluation {
    let total = idx.map_or(labels.len(), <[u32]>::len);
    let chunks: Vec<(f64, usize, Vec<u64>)> = (0..total.div_ceil(EVAL_CHUNK))
        .into_par_iter()
        .map(|c| {
            let lo = c * EVAL_CHUNK;
            let hi = (lo + EVAL_CHUNK).min(total);
            let rows = hi - lo;
            let mut ws = Workspace::new(net, rows);
            let mut labs = vec![0u8; rows];
            {
                let mut input = ws.input_mut(rows);
                let dst = input.as_slice_mut().expect("workspace rows are contiguous");
                for (r, (row, lab)) in dst
                    .chunks_exact_mut(features)
                    .zip(labs.iter_mut())
                    .enumerate()
                {
                    let i = idx.map_or(lo + r, |ix| ix[lo + r] as usize);
                    kernels::bytes_to_unit(row, &images[i * features..(i + 1) * features]);
                    *lab = labels[i];
                }
            }
            let st = net.forward_loss(&mut ws, rows, &labs, loss, Mode::Eval);
            let mut conf = vec![0u64; classes * classes];
            for (&y, &p) in labs.iter().zip(&ws.preds[..rows]) {
                conf[usize::from(y) * classes + usize::from(p)] += 1;
            }
            (st.loss_sum, st.correct, conf)
        })
        .collect();
    let mut loss_sum = 0.0;
    let mut correct = 0;
    let mut conf = vec![0u64; classes * classes];
    for (l, c, m) in chunks {
        loss_sum += l;
        correct += c;
        for (a, b) in conf.iter_mut().zip(m) {
            *a += b;
        }
    }
    let denom = total.max(1) as f64;
    Evaluation {
        loss: if total == 0 { 0.0 } else { loss_sum / denom },
        accuracy: correct as f64 / denom,
        confusion: conf.chunks(classes).map(<[u64]>::to_vec).collect(),
    }
}
