//! A trained network as two files anyone can read: `model.safetensors` (the weights, in
//! Hugging Face's safetensors format) and `model.json` (the card: architecture, input scaling,
//! class names, data set and its digest, resolved config, metrics, and the weights' SHA-256).
//!
//! Tensors are named and shaped as PyTorch's `nn.Linear` and `nn.BatchNorm1d` keep them, so the
//! weights load into either with a few lines (docs/MODELS.md): dense layer `l` (0-based, the
//! output layer last) is `layers.{l}.weight` (`fan_out × fan_in`) and `layers.{l}.bias`; a
//! batch-normalised hidden layer adds `layers.{l}.norm.weight` (γ), `.norm.bias` (β),
//! `.norm.running_mean` and `.norm.running_var`. All `f32`, little-endian.
//!
//! Loading checks everything against the card before a number is used: the format and its
//! version, the architecture's bounds, the weights' digest (a truncated or replaced file), and
//! each tensor's presence, type and shape (another architecture); every error names the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::Dataset;
use crate::nn::{batch_norm, kernels, Activation, Extras, Init, Loss, Mlp, Mode, Workspace};
use crate::train::{TrainConfig, TrialResult};

pub use sweep_trainer::{MODEL_CARD as CARD, MODEL_WEIGHTS as WEIGHTS};
/// The card's `format`.
pub const FORMAT: &str = "sweep-mlp";
/// The card's `version` this build writes and reads.
pub const VERSION: u32 = 1;
/// Largest card read.
const MAX_CARD_BYTES: u64 = 1 << 20;
/// Largest weights file read (a 64-layer network of 4,096-wide layers is 4 GiB; that is past
/// any MLP this engine trains in a sweep).
const MAX_WEIGHTS_BYTES: u64 = 4 << 30;
/// Largest number of classes (the engine's labels are bytes).
const MAX_CLASSES: usize = 256;
/// Largest input (pixels per image).
const MAX_FEATURES: usize = 1 << 24;
/// Longest class name, in characters.
const MAX_CLASS_NAME_CHARS: usize = 256;
/// Memory a prediction's working buffers may take (images are fed in chunks that fit).
const WORKSPACE_BYTES: usize = 256 << 20;

/// A model that does not load: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ModelError {
    /// The file (or directory) at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The card: what the weights are, how to feed them, and how they were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written by this build.
    pub version: u32,
    /// The network.
    pub architecture: Architecture,
    /// What an input is.
    pub input: Input,
    /// Class names in output order.
    pub classes: Vec<String>,
    /// The data the model was trained on.
    pub dataset: DatasetInfo,
    /// The loss it was trained with (its test loss is in that loss).
    pub loss: String,
    /// The trial's resolved configuration (the `worker train` parameters).
    pub config: serde_json::Value,
    /// Its final metrics: the last epoch's, and the test set's.
    pub metrics: BTreeMap<String, f64>,
    /// The weights file.
    pub weights: WeightsInfo,
}

/// The network's shape and layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// Widths: input, each hidden layer, classes.
    pub sizes: Vec<usize>,
    /// Hidden-layer activation (docs/TRAINING.md).
    pub activation: String,
    /// Batch normalization before each hidden activation.
    pub batch_norm: bool,
    /// ε of batch normalization.
    pub batch_norm_eps: f64,
    /// Dropout after each hidden layer in training (inference does not use it).
    pub dropout: Vec<f64>,
    /// The output: softmax over the classes.
    pub output: String,
}

impl Architecture {
    /// The architecture of `net`.
    pub fn of(net: &Mlp<f32>) -> Self {
        let extras = net.extras();
        Architecture {
            sizes: net.sizes().to_vec(),
            activation: net.activation().name().into(),
            batch_norm: extras.batch_norm,
            batch_norm_eps: batch_norm::EPS,
            dropout: extras.dropout,
            output: "softmax".into(),
        }
    }
}

/// What the network takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// Image height and width, pixels in row-major order.
    pub shape: [usize; 2],
    /// How a pixel byte becomes an input: `pixel / 255`.
    pub scale: String,
}

/// The training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// `mnist`, `fashion_mnist`, or the directory given.
    pub name: String,
    /// SHA-256 of the decoded data ([`Dataset::sha256`]).
    pub sha256: String,
    /// Training images (validation is split off them).
    pub train_images: usize,
    /// Test images.
    pub test_images: usize,
}

/// The weights file as the card knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    /// Its name beside the card.
    pub file: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Its length.
    pub bytes: u64,
}

/// A loaded model: its card and its network, ready to predict.
#[derive(Debug, Clone)]
pub struct Model {
    /// The card.
    pub card: Card,
    /// The network.
    pub net: Mlp<f32>,
    /// Weights and statistics that are not finite (NaN or infinite): its outputs mean nothing.
    pub non_finite: usize,
}

/// The card of a trial's network.
pub fn card(cfg: &TrainConfig, data: &Dataset, result: &TrialResult, net: &Mlp<f32>) -> Card {
    let mut metrics = BTreeMap::new();
    if let Some(e) = result.epochs.last() {
        metrics.insert("epochs".into(), e.epoch as f64);
        metrics.insert("loss".into(), e.loss);
        metrics.insert("accuracy".into(), e.accuracy);
        metrics.insert("val_loss".into(), e.val_loss);
        metrics.insert("val_accuracy".into(), e.val_accuracy);
    }
    if let Some(t) = &result.test {
        metrics.insert("test_loss".into(), t.loss);
        metrics.insert("test_accuracy".into(), t.accuracy);
    }
    Card {
        format: FORMAT.into(),
        version: VERSION,
        architecture: Architecture::of(net),
        input: Input {
            shape: [data.shape.0, data.shape.1],
            scale: "pixel / 255".into(),
        },
        classes: data.classes.clone(),
        dataset: DatasetInfo {
            name: data.name.clone(),
            sha256: data.sha256(),
            train_images: data.train.len(),
            test_images: data.test.len(),
        },
        loss: cfg.loss.name().into(),
        config: cfg.to_json(),
        metrics,
        weights: WeightsInfo {
            file: WEIGHTS.into(),
            sha256: String::new(),
            bytes: 0,
        },
    }
}

/// The tensors of `net`, named and shaped as PyTorch keeps them, as (name, shape, values).
fn tensors(net: &Mlp<f32>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    for (l, shape) in net.layers().iter().enumerate() {
        let (fi, fo) = (shape.fan_in, shape.fan_out);
        let w = &net.params[shape.w_range()];
        // Ours is fan_in × fan_out row-major; nn.Linear's is fan_out × fan_in.
        let mut t = vec![0.0f32; fi * fo];
        for i in 0..fi {
            for o in 0..fo {
                t[o * fi + i] = w[i * fo + o];
            }
        }
        out.push((format!("layers.{l}.weight"), vec![fo, fi], t));
        out.push((
            format!("layers.{l}.bias"),
            vec![fo],
            net.params[shape.b_range()].to_vec(),
        ));
        if let (Some(g), Some(s)) = (shape.norm, shape.stats) {
            let p = |from: usize| net.params[from..from + fo].to_vec();
            let r = |from: usize| net.stats[from..from + fo].to_vec();
            out.push((format!("layers.{l}.norm.weight"), vec![fo], p(g)));
            out.push((format!("layers.{l}.norm.bias"), vec![fo], p(g + fo)));
            out.push((format!("layers.{l}.norm.running_mean"), vec![fo], r(s)));
            out.push((format!("layers.{l}.norm.running_var"), vec![fo], r(s + fo)));
        }
    }
    out
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The weights of `net` as a safetensors file's bytes.
pub fn weights_bytes(net: &Mlp<f32>) -> Vec<u8> {
    let tensors = tensors(net);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, le_bytes(&v)))
        .collect();
    let views = bytes.iter().map(|(n, s, b)| {
        let view = TensorView::new(Dtype::F32, s.clone(), b).expect("shape matches the data");
        (n.as_str(), view)
    });
    let meta = [("format".to_string(), FORMAT.to_string())].into();
    safetensors::serialize(views, Some(meta)).expect("in-memory tensors serialize")
}

/// The two files of `net` with its `card`: the card's text (naming the weights' digest and
/// length) and the weights.
pub fn encode(net: &Mlp<f32>, mut card: Card) -> (String, Vec<u8>) {
    let weights = weights_bytes(net);
    card.weights = WeightsInfo {
        file: WEIGHTS.into(),
        sha256: hex(&Sha256::digest(&weights)),
        bytes: weights.len() as u64,
    };
    let text = serde_json::to_string_pretty(&card).expect("a card serializes") + "\n";
    (text, weights)
}

/// Writes a model's two files into `dir` (created if needed): the weights, then the card that
/// names their digest.
pub fn write(dir: &Path, card: &str, weights: &[u8]) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| bad(dir, format!("cannot create it: {e}")))?;
    let wpath = dir.join(WEIGHTS);
    std::fs::write(&wpath, weights).map_err(|e| bad(&wpath, format!("cannot write it: {e}")))?;
    let cpath = dir.join(CARD);
    std::fs::write(&cpath, card).map_err(|e| bad(&cpath, format!("cannot write it: {e}")))
}

/// Writes `net` with its `card` into `dir`.
pub fn save(dir: &Path, net: &Mlp<f32>, card: Card) -> Result<(), ModelError> {
    let (text, weights) = encode(net, card);
    write(dir, &text, &weights)
}

fn read_capped(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, ModelError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            format!("no {what} here (a model directory holds {CARD} and {WEIGHTS})")
        } else {
            format!("cannot read it: {e}")
        };
        bad(path, hint)
    })?;
    if meta.len() > max {
        return Err(bad(
            path,
            format!("{} bytes; a {what} is at most {max}", meta.len()),
        ));
    }
    std::fs::read(path).map_err(|e| bad(path, format!("cannot read it: {e}")))
}

impl Card {
    /// Checks what the card says before anything is built from it.
    fn check(&self, path: &Path) -> Result<(Activation, Loss, Extras), ModelError> {
        if self.format != FORMAT {
            return Err(bad(
                path,
                format!("format is {:?}, expected {FORMAT:?}", self.format),
            ));
        }
        if self.version != VERSION {
            return Err(bad(
                path,
                format!(
                    "version {} is not one this build reads (it reads {VERSION})",
                    self.version
                ),
            ));
        }
        let a = &self.architecture;
        let n = a.sizes.len();
        let hidden_ok = n >= 2
            && a.sizes[1..n - 1]
                .iter()
                .all(|&w| (1..=sweep_trainer::config::MAX_HIDDEN).contains(&w));
        if !hidden_ok
            || n > sweep_trainer::config::MAX_LAYERS + 2
            || !(1..=MAX_FEATURES).contains(&a.sizes[0])
            || !(1..=MAX_CLASSES).contains(&a.sizes[n - 1])
        {
            return Err(bad(path, format!("architecture.sizes {:?}: expected the input width (1 to {MAX_FEATURES}), up to {} hidden widths (1 to {}) and the class count (1 to {MAX_CLASSES})", a.sizes, sweep_trainer::config::MAX_LAYERS, sweep_trainer::config::MAX_HIDDEN)));
        }
        if self.classes.len() != a.sizes[n - 1] {
            return Err(bad(
                path,
                format!(
                    "{} class names for {} outputs",
                    self.classes.len(),
                    a.sizes[n - 1]
                ),
            ));
        }
        if let Some((i, c)) = self
            .classes
            .iter()
            .enumerate()
            .find(|(_, c)| c.chars().count() > MAX_CLASS_NAME_CHARS)
        {
            return Err(bad(
                path,
                format!(
                    "classes[{i}] is {} characters; a class name is at most {MAX_CLASS_NAME_CHARS}",
                    c.chars().count()
                ),
            ));
        }
        if self.input.shape[0].checked_mul(self.input.shape[1]) != Some(a.sizes[0]) {
            return Err(bad(
                path,
                format!(
                    "input.shape {:?} is not the input width {}",
                    self.input.shape, a.sizes[0]
                ),
            ));
        }
        let activation = a
            .activation
            .parse()
            .map_err(|e| bad(path, format!("architecture.activation: {e}")))?;
        let loss = self
            .loss
            .parse()
            .map_err(|e| bad(path, format!("loss: {e}")))?;
        if a.dropout.len() != n - 2 || !a.dropout.iter().all(|p| (0.0..1.0).contains(p)) {
            return Err(bad(
                path,
                format!("architecture.dropout: expected {} rates in [0, 1)", n - 2),
            ));
        }
        if a.batch_norm && a.batch_norm_eps != batch_norm::EPS {
            return Err(bad(
                path,
                format!(
                    "architecture.batch_norm_eps {} is not this engine's {}",
                    a.batch_norm_eps,
                    batch_norm::EPS
                ),
            ));
        }
        let extras = Extras {
            batch_norm: a.batch_norm,
            dropout: a.dropout.clone(),
        };
        Ok((activation, loss, extras))
    }
}

/// Loads the model in `dir`.
pub fn load(dir: &Path) -> Result<Model, ModelError> {
    let cpath = dir.join(CARD);
    let text = read_capped(&cpath, MAX_CARD_BYTES, "model card")?;
    let card: Card =
        serde_json::from_slice(&text).map_err(|e| bad(&cpath, format!("not a model card: {e}")))?;
    let (activation, _, extras) = card.check(&cpath)?;
    let wpath = dir.join(&card.weights.file);
    if card.weights.file.contains(['/', '\\']) || card.weights.file.starts_with('.') {
        return Err(bad(
            &cpath,
            format!(
                "weights.file {:?}: expected a file name beside the card",
                card.weights.file
            ),
        ));
    }
    let bytes = read_capped(&wpath, MAX_WEIGHTS_BYTES, "weights file")?;
    let digest = hex(&Sha256::digest(&bytes));
    if bytes.len() as u64 != card.weights.bytes || digest != card.weights.sha256 {
        return Err(bad(
            &wpath,
            format!(
                "{} bytes with SHA-256 {digest}, but the card says {} bytes with {} (truncated, or not the weights this card describes)",
                bytes.len(),
                card.weights.bytes,
                card.weights.sha256
            ),
        ));
    }
    // The network is allocated from the card's sizes: they must fit in the weights file
    // first (a card of huge layers beside a small file would otherwise take any memory).
    let needed = parameter_bytes(&card.architecture.sizes, extras.batch_norm);
    if needed.is_none_or(|n| n > bytes.len() as u64) {
        return Err(bad(
            &cpath,
            format!(
                "architecture.sizes {:?} take {} of weights, but {} holds {} bytes",
                card.architecture.sizes,
                needed.map_or("more than 2^64 bytes".into(), |n| format!("{n} bytes")),
                card.weights.file,
                bytes.len()
            ),
        ));
    }
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(&wpath, format!("not a safetensors file: {e}")))?;
    // The weights are overwritten below; the generator only fills them first.
    let mut net = Mlp::<f32>::with_extras(
        &card.architecture.sizes,
        activation,
        Init::Xavier,
        &extras,
        &mut ChaCha8Rng::seed_from_u64(0),
    );
    let expected = tensors(&net);
    for name in st.names() {
        if !expected.iter().any(|(n, _, _)| n == name) {
            return Err(bad(&wpath, format!("holds a tensor {name:?} that the card's architecture does not have (weights of another network?)")));
        }
    }
    let layers = net.layers().to_vec();
    for (l, shape) in layers.iter().enumerate() {
        let (fi, fo) = (shape.fan_in, shape.fan_out);
        let w = read_tensor(&st, &wpath, &format!("layers.{l}.weight"), &[fo, fi])?;
        let params = &mut net.params;
        for o in 0..fo {
            for i in 0..fi {
                params[shape.w + i * fo + o] = w[o * fi + i];
            }
        }
        let b = read_tensor(&st, &wpath, &format!("layers.{l}.bias"), &[fo])?;
        params[shape.b_range()].copy_from_slice(&b);
        if let (Some(g), Some(s)) = (shape.norm, shape.stats) {
            let t = |suffix: &str| {
                read_tensor(&st, &wpath, &format!("layers.{l}.norm.{suffix}"), &[fo])
            };
            net.params[g..g + fo].copy_from_slice(&t("weight")?);
            net.params[g + fo..g + 2 * fo].copy_from_slice(&t("bias")?);
            net.stats[s..s + fo].copy_from_slice(&t("running_mean")?);
            net.stats[s + fo..s + 2 * fo].copy_from_slice(&t("running_var")?);
        }
    }
    let non_finite = net
        .params
        .iter()
        .chain(net.stats.iter())
        .filter(|v| !v.is_finite())
        .count();
    Ok(Model {
        card,
        net,
        non_finite,
    })
}

/// Bytes of the f32 tensors a network of `sizes` has (None: past u64).
fn parameter_bytes(sizes: &[usize], batch_norm: bool) -> Option<u64> {
    let mut n: u64 = 0;
    let last = sizes.len().saturating_sub(2);
    for (l, w) in sizes.windows(2).enumerate() {
        let (fi, fo) = (w[0] as u64, w[1] as u64);
        n = n.checked_add(fi.checked_mul(fo)?)?.checked_add(fo)?;
        if batch_norm && l < last {
            n = n.checked_add(fo.checked_mul(4)?)?;
        }
    }
    n.checked_mul(4)
}

fn read_tensor(
    st: &SafeTensors<'_>,
    path: &Path,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, ModelError> {
    let t = st.tensor(name).map_err(|_| {
        bad(
            path,
            format!("has no tensor {name:?}, which the card's architecture needs"),
        )
    })?;
    if t.dtype() != Dtype::F32 || t.shape() != shape {
        return Err(bad(
            path,
            format!(
                "tensor {name:?} is {:?} {:?}, expected F32 {shape:?}",
                t.dtype(),
                t.shape()
            ),
        ));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Images per forward pass when predicting.
const CHUNK: usize = 1000;

impl Model {
    /// Pixels per image.
    pub fn features(&self) -> usize {
        self.card.architecture.sizes[0]
    }

    /// Class probabilities (`images × classes`, row by row) of images given as pixel bytes
    /// (`features` per image).
    pub fn probabilities(&self, pixels: &[u8]) -> Vec<f32> {
        let f = self.features();
        let k = self.card.classes.len();
        let n = pixels.len() / f;
        let mut out = Vec::with_capacity(n * k);
        // About six buffers of each layer's width per image.
        let per_image = 6 * 4 * self.card.architecture.sizes.iter().sum::<usize>();
        let chunk_rows = (WORKSPACE_BYTES / per_image.max(1)).clamp(1, CHUNK);
        let mut ws = Workspace::new(&self.net, chunk_rows.min(n).max(1));
        let labels = vec![0u8; chunk_rows];
        for chunk in pixels[..n * f].chunks(chunk_rows * f) {
            let rows = chunk.len() / f;
            {
                let mut input = ws.input_mut(rows);
                let dst = input.as_slice_mut().expect("workspace rows are contiguous");
                for (row, src) in dst.chunks_exact_mut(f).zip(chunk.chunks_exact(f)) {
                    kernels::bytes_to_unit(row, src);
                }
            }
            let loss = Loss::CrossEntropy;
            self.net
                .forward_loss(&mut ws, rows, &labels[..rows], loss, Mode::Eval);
            out.extend(ws.probs(rows).iter());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(extras: &Extras) -> Mlp<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut net =
            Mlp::<f32>::with_extras(&[4, 3, 2], Activation::Tanh, Init::Xavier, extras, &mut rng);
        for (i, s) in net.stats.iter_mut().enumerate() {
            *s += i as f32 * 0.25;
        }
        net
    }

    fn a_card(net: &Mlp<f32>) -> Card {
        Card {
            format: FORMAT.into(),
            version: VERSION,
            architecture: Architecture::of(net),
            input: Input {
                shape: [2, 2],
                scale: "pixel / 255".into(),
            },
            classes: vec!["a".into(), "b".into()],
            dataset: DatasetInfo {
                name: "test".into(),
                sha256: String::new(),
                train_images: 0,
                test_images: 0,
            },
            loss: "cross_entropy".into(),
            config: serde_json::json!({}),
            metrics: BTreeMap::new(),
            weights: WeightsInfo {
                file: WEIGHTS.into(),
                sha256: String::new(),
                bytes: 0,
            },
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sweep-model-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_saved_model_loads_with_the_same_weights_and_predictions() {
        for extras in [
            Extras::default(),
            Extras {
                batch_norm: true,
                dropout: vec![0.5],
            },
        ] {
            let net = small(&extras);
            let dir = temp(&format!("roundtrip-{}", extras.batch_norm));
            save(&dir, &net, a_card(&net)).unwrap();
            let m = load(&dir).unwrap();
            assert_eq!(m.net.params, net.params);
            assert_eq!(m.net.stats, net.stats);
            assert_eq!(m.net.extras(), net.extras());
            let pixels = [0u8, 128, 255, 7, 90, 3, 200, 45];
            let p = m.probabilities(&pixels);
            assert_eq!(p.len(), 4);
            assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn bad_model_files_are_clear_errors_naming_the_file() {
        let net = small(&Extras::default());
        let dir = temp("bad");
        let reason = |dir: &Path| {
            let e = load(dir).unwrap_err();
            (
                e.path.file_name().unwrap().to_string_lossy().to_string(),
                e.reason,
            )
        };
        // Nothing there.
        let (file, why) = reason(&dir);
        assert_eq!(file, CARD);
        assert!(why.contains("no model card here"), "{why}");
        save(&dir, &net, a_card(&net)).unwrap();
        let weights = std::fs::read(dir.join(WEIGHTS)).unwrap();
        // Truncated weights.
        std::fs::write(dir.join(WEIGHTS), &weights[..weights.len() - 5]).unwrap();
        let (file, why) = reason(&dir);
        assert_eq!(file, WEIGHTS);
        assert!(why.contains("truncated"), "{why}");
        // Weights of another architecture, with a card that vouches for them.
        let other = Mlp::<f32>::new(
            &[4, 5, 2],
            Activation::Tanh,
            Init::Xavier,
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        let wrong = weights_bytes(&other);
        std::fs::write(dir.join(WEIGHTS), &wrong).unwrap();
        let mut card: Card =
            serde_json::from_slice(&std::fs::read(dir.join(CARD)).unwrap()).unwrap();
        card.weights.sha256 = hex(&Sha256::digest(&wrong));
        card.weights.bytes = wrong.len() as u64;
        std::fs::write(dir.join(CARD), serde_json::to_string(&card).unwrap()).unwrap();
        let (file, why) = reason(&dir);
        assert_eq!(file, WEIGHTS);
        assert!(
            why.contains("\"layers.0.weight\" is F32 [5, 4], expected F32 [3, 4]"),
            "{why}"
        );
        // A card that is not one, or of another version, or of an impossible network.
        std::fs::write(dir.join(CARD), "{\"format\": 3}").unwrap();
        let (file, why) = reason(&dir);
        assert_eq!(file, CARD);
        assert!(why.contains("not a model card"), "{why}");
        let mut c = a_card(&net);
        c.version = 99;
        std::fs::write(dir.join(CARD), serde_json::to_string(&c).unwrap()).unwrap();
        assert!(reason(&dir).1.contains("version 99"));
        let mut c = a_card(&net);
        c.architecture.sizes = vec![4, 0, 2];
        std::fs::write(dir.join(CARD), serde_json::to_string(&c).unwrap()).unwrap();
        assert!(reason(&dir).1.contains("architecture.sizes"));
        let mut c = a_card(&net);
        c.weights.file = "../elsewhere".into();
        std::fs::write(dir.join(CARD), serde_json::to_string(&c).unwrap()).unwrap();
        assert!(reason(&dir).1.contains("weights.file"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn crafted_cards_are_refused_before_anything_is_allocated_and_nan_weights_are_counted() {
        let net = small(&Extras::default());
        let dir = temp("crafted");
        let reason = |dir: &Path| load(dir).unwrap_err().reason;
        save(&dir, &net, a_card(&net)).unwrap();
        let good: Card = serde_json::from_slice(&std::fs::read(dir.join(CARD)).unwrap()).unwrap();
        let write = |c: &Card| {
            std::fs::write(dir.join(CARD), serde_json::to_string(c).unwrap()).unwrap();
        };
        // Layers within the bounds but far past the weights file beside it (the digest
        // matches): refused from the sizes, before a network is allocated (before: 67 GB).
        let mut c = good.clone();
        let wide = sweep_trainer::config::MAX_HIDDEN;
        c.architecture.sizes = [4]
            .into_iter()
            .chain(std::iter::repeat_n(wide, sweep_trainer::config::MAX_LAYERS))
            .chain([2])
            .collect();
        c.architecture.dropout = vec![0.0; sweep_trainer::config::MAX_LAYERS];
        write(&c);
        let why = reason(&dir);
        assert!(
            why.contains("of weights, but model.safetensors holds"),
            "{why}"
        );
        // An input shape whose product wraps around to the input width.
        let mut c = good.clone();
        c.input.shape = [(1usize << 63) + 2, 2];
        write(&c);
        let why = reason(&dir);
        assert!(why.contains("input.shape"), "{why}");
        // A class name of 100,000 characters.
        let mut c = good.clone();
        c.classes[0] = "x".repeat(100_000);
        write(&c);
        let why = reason(&dir);
        assert!(why.contains("classes[0] is 100000 characters"), "{why}");
        // NaN weights load, counted (the CLI warns).
        let mut bad = net.clone();
        bad.params[0] = f32::NAN;
        bad.params[1] = f32::INFINITY;
        save(&dir, &bad, a_card(&bad)).unwrap();
        assert_eq!(load(&dir).unwrap().non_finite, 2);
        save(&dir, &net, a_card(&net)).unwrap();
        assert_eq!(load(&dir).unwrap().non_finite, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
