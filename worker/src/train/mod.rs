//! The training loop of one trial: batches, steps, per-epoch metrics, evaluation, the
//! confusion matrix, and the hooks an agent needs (per-epoch callback that can stop the
//! trial, a cancel flag checked between batches).
//!
//! Training runs on the calling thread (single-threaded GEMM, so trials scale by running
//! several at once); evaluation fans out over rayon in fixed chunks whose sums are combined in
//! chunk order, so metrics are bit-identical whatever the thread count.

pub mod checkpoint;

pub use sweep_trainer::config;

use std::sync::atomic::{AtomicU8, Ordering};
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
pub use checkpoint::{Checkpoint, Position};
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
    /// Receives the trial's state: after every epoch but the last when
    /// [`TrialOptions::checkpoints`] is set, and once more when a [`Cancel::hand_back`] ends it.
    fn on_checkpoint(&mut self, _checkpoint: Checkpoint) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;
impl Observer for NoObserver {}

/// A flag another thread raises to end a trial between batches, at once or after handing its
/// state to the observer ([`Observer::on_checkpoint`]).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicU8>);

/// [`Cancel`]'s flag values.
const GO_ON: u8 = 0;
const END_NOW: u8 = 1;
const END_WITH_CHECKPOINT: u8 = 2;

impl Cancel {
    /// A lowered flag.
    pub fn new() -> Self {
        Self::default()
    }
    /// Raises the flag; the trial ends after its current batch.
    pub fn cancel(&self) {
        self.0.store(END_NOW, Ordering::Relaxed);
    }
    /// Raises the flag asking for a checkpoint: the trial ends after its current batch (or
    /// epoch report) and hands its state to the observer first. An earlier [`Cancel::cancel`]
    /// stands.
    pub fn hand_back(&self) {
        let _ = self.0.compare_exchange(
            GO_ON,
            END_WITH_CHECKPOINT,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    /// Whether the flag is raised.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed) != GO_ON
    }
    /// Whether the flag is raised with a checkpoint asked for.
    pub fn wants_checkpoint(&self) -> bool {
        self.0.load(Ordering::Relaxed) == END_WITH_CHECKPOINT
    }
}

/// Run-time options that are not hyperparameters.
#[derive(Debug, Clone, Default)]
pub struct TrialOptions {
    /// Train on only the first N training images (validation is unchanged).
    pub train_samples: Option<usize>,
    /// Raised by another thread to end the trial.
    pub cancel: Option<Cancel>,
    /// Hand the observer a checkpoint after every epoch but the last.
    pub checkpoints: bool,
    /// Go on from this state instead of starting afresh (it must be this trial's:
    /// [`checkpoint::fingerprint`]).
    pub resume: Option<Checkpoint>,
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
    /// The checkpoint to resume from does not fit this trial.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// What the training loop carries from one batch to the next (a checkpoint's contents).
struct Live {
    net: Mlp<f32>,
    opt: Optimizer<f32>,
    /// The training images' order, shuffled in place every epoch.
    order: Vec<u32>,
    /// Batch order (after the initial weights were drawn from it).
    rng: ChaCha8Rng,
    /// Dropout masks.
    masks: ChaCha8Rng,
}

impl Live {
    fn checkpoint(
        &self,
        at: Position,
        fingerprint: &str,
        (loss_sum, correct): (f64, usize),
        history: &[EpochMetrics],
    ) -> Checkpoint {
        let (steps, s1, s2) = self.opt.state();
        Checkpoint {
            at,
            fingerprint: fingerprint.to_string(),
            params: self.net.params.clone(),
            stats: self.net.stats.clone(),
            steps,
            s1: s1.to_vec(),
            s2: s2.to_vec(),
            order: self.order.clone(),
            shuffle_word: self.rng.get_word_pos(),
            mask_word: self.masks.get_word_pos(),
            loss_sum,
            correct: correct as u64,
            history: history.to_vec(),
        }
    }

    /// Puts `ck`'s state in place, after checking that it fits this trial.
    fn restore(
        &mut self,
        ck: &Checkpoint,
        fingerprint: &str,
        batches: usize,
        epochs: usize,
    ) -> Result<(), String> {
        if ck.fingerprint != fingerprint {
            return Err(
                "it belongs to another trial, or to other data (its fingerprint differs)".into(),
            );
        }
        let Position { epoch, batch } = ck.at;
        if epoch > epochs
            || batch > batches
            || (batch > 0 && epoch == epochs)
            || ck.history.len() != epoch
        {
            return Err(format!("it stands at epoch {epoch} batch {batch} with {} epochs of history; this trial has {epochs} epochs of {batches} batches", ck.history.len()));
        }
        for (what, have, want) in [
            ("parameters", ck.params.len(), self.net.params.len()),
            ("running estimates", ck.stats.len(), self.net.stats.len()),
            ("image order", ck.order.len(), self.order.len()),
        ] {
            if have != want {
                return Err(format!("{have} {what}, expected {want}"));
            }
        }
        let mut sorted = ck.order.clone();
        sorted.sort_unstable();
        let mut ours = self.order.clone();
        ours.sort_unstable();
        if sorted != ours {
            return Err("its image order is not an order of this trial's training images".into());
        }
        self.opt.restore(ck.steps, &ck.s1, &ck.s2)?;
        self.net.params.copy_from_slice(&ck.params);
        self.net.stats.copy_from_slice(&ck.stats);
        self.order.copy_from_slice(&ck.order);
        self.rng.set_word_pos(ck.shuffle_word);
        self.masks.set_word_pos(ck.mask_word);
        Ok(())
    }
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
    let net = Mlp::<f32>::with_extras(&sizes, cfg.activation, cfg.weight_init, &extras, &mut rng);
    // Dropout's masks come from a stream of their own, so that turning dropout on leaves the
    // weights and the batch order as they were.
    let mut masks = ChaCha8Rng::seed_from_u64(cfg.seed);
    masks.set_stream(1);
    let decayed = net.layers().iter().map(|l| l.w_range()).collect();
    let opt = Optimizer::<f32>::new(cfg.optimizer, cfg.hyper, net.num_params(), decayed);
    let batch = cfg.batch_size.min(split.train.len());
    let mut ws = Workspace::new(&net, batch);
    let mut grads = vec![0.0f32; net.num_params()];
    let mut labels = vec![0u8; batch];
    let mut live = Live {
        net,
        opt,
        order: split.train.clone(),
        rng,
        masks,
    };
    let n = live.order.len();
    let batches = n.div_ceil(batch);
    let rates = Rates::new(cfg.hyper.learning_rate, cfg.schedule, batches, cfg.epochs);
    let f = data.features;
    let fingerprint = if opts.checkpoints || opts.resume.is_some() {
        checkpoint::fingerprint(cfg, data, n)
    } else {
        String::new()
    };

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
    // Where training starts: epoch 1, or where the checkpoint stands.
    let mut at = Position { epoch: 0, batch: 0 };
    let mut carried = (0.0f64, 0usize);
    if let Some(ck) = &opts.resume {
        live.restore(ck, &fingerprint, batches, cfg.epochs)
            .map_err(TrainError::Checkpoint)?;
        at = ck.at;
        carried = (ck.loss_sum, ck.correct as usize);
        result.epochs.extend_from_slice(&ck.history);
    }
    let cancel = opts.cancel.as_ref();

    'epochs: for epoch in at.epoch + 1..=cfg.epochs {
        let t0 = Instant::now();
        // A checkpoint taken mid-epoch holds this epoch's order and sums so far.
        let (skip, (mut loss_sum, mut correct)) = if epoch == at.epoch + 1 && at.batch > 0 {
            (at.batch, carried)
        } else {
            live.order.shuffle(&mut live.rng);
            (0, (0.0, 0))
        };
        for (bi, idx) in live.order.chunks(batch).enumerate().skip(skip) {
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
            let st = live.net.forward_loss(
                &mut ws,
                rows,
                &labels,
                cfg.loss,
                Mode::Train(&mut live.masks),
            );
            if !st.loss_sum.is_finite() {
                result.status = Status::Diverged;
                result.diverged_at = Some((epoch, bi + 1));
                break 'epochs;
            }
            loss_sum += st.loss_sum;
            correct += st.correct;
            live.net.backward(&mut ws, rows, &mut grads);
            live.net.update_stats(&ws, rows);
            live.opt.set_learning_rate(rates.at(live.opt.steps()));
            live.opt.step(&mut live.net.params, &mut grads);
            obs.on_batch(epoch, bi + 1, batches);
            if let Some(c) = cancel.filter(|c| c.is_cancelled()) {
                if c.wants_checkpoint() {
                    let at = Position {
                        epoch: epoch - 1,
                        batch: bi + 1,
                    };
                    obs.on_checkpoint(live.checkpoint(
                        at,
                        &fingerprint,
                        (loss_sum, correct),
                        &result.epochs,
                    ));
                }
                result.status = Status::Cancelled;
                break 'epochs;
            }
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let val = evaluate(
            &live.net,
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
        let control = obs.on_epoch(&m);
        let boundary = Position { epoch, batch: 0 };
        if let Some(c) = cancel.filter(|c| c.is_cancelled()) {
            if c.wants_checkpoint() {
                obs.on_checkpoint(live.checkpoint(
                    boundary,
                    &fingerprint,
                    (0.0, 0),
                    &result.epochs,
                ));
            }
            result.status = Status::Cancelled;
            break;
        }
        if control == Control::Stop {
            result.status = Status::Stopped;
            break;
        }
        if opts.checkpoints && epoch < cfg.epochs {
            obs.on_checkpoint(live.checkpoint(boundary, &fingerprint, (0.0, 0), &result.epochs));
        }
    }
    if matches!(result.status, Status::Finished | Status::Stopped) {
        result.test = Some(evaluate(
            &live.net,
            cfg.loss,
            &data.test.images,
            &data.test.labels,
            None,
            f,
            classes,
        ));
        result.net = Some(live.net);
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
