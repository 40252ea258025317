//! A running trial's whole state between two batches, so that another process can go on from
//! it and end with exactly the numbers of a run that was never interrupted.
//!
//! The state is what the training loop carries from one batch to the next: the parameters and
//! batch normalization's running estimates, the optimizer's step count and state vectors, the
//! current epoch's image order, the positions of the two random streams (batch order and
//! dropout masks; ChaCha8 word positions), the running loss sum and correct count of a partly
//! trained epoch, and the metrics of the epochs done. The learning rate is a pure function of
//! the step count, so it needs nothing of its own.
//!
//! Encoded as one safetensors file: the vectors are tensors (floats as their exact bits), the
//! rest is a JSON header in the file's metadata. A fingerprint of the resolved config, the data
//! set's digest and the training images makes a checkpoint of another trial, or of the same
//! trial on other data, refuse to load instead of silently training on.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{EpochMetrics, TrainConfig};
use crate::data::Dataset;

/// The header's `format`.
pub const FORMAT: &str = "sweep-checkpoint";
/// The header's `version` this build writes and reads.
pub const VERSION: u32 = 1;
/// The metadata key holding the header.
const HEADER_KEY: &str = "checkpoint";

/// Columns of the `history` tensor, in order.
const HISTORY_COLUMNS: usize = 7;

/// Where a checkpoint stands: epochs done, and batches done of the next epoch (0: at the
/// boundary, before the next epoch's shuffle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Epochs completed (their validation done and reported).
    pub epoch: usize,
    /// Batches of epoch `epoch + 1` completed.
    pub batch: usize,
}

/// A trial's state between two batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Where it stands.
    pub at: Position,
    /// [`fingerprint`] of the trial it belongs to.
    pub fingerprint: String,
    /// The network's parameters.
    pub params: Vec<f32>,
    /// Batch normalization's running estimates (empty without it).
    pub stats: Vec<f32>,
    /// Optimizer steps taken.
    pub steps: u64,
    /// The optimizer's first state vector (empty when its rule keeps none).
    pub s1: Vec<f32>,
    /// The optimizer's second state vector (empty when its rule keeps none).
    pub s2: Vec<f32>,
    /// The training images' order: this epoch's (mid-epoch) or the last one's (at a boundary).
    pub order: Vec<u32>,
    /// Word position of the batch-order stream.
    pub shuffle_word: u128,
    /// Word position of the dropout-mask stream.
    pub mask_word: u128,
    /// Loss summed over the batches done of the current epoch.
    pub loss_sum: f64,
    /// Correct predictions over the batches done of the current epoch.
    pub correct: u64,
    /// Metrics of the epochs done.
    pub history: Vec<EpochMetrics>,
}

/// The JSON header in the file's metadata.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    epoch: usize,
    batch: usize,
    fingerprint: String,
    steps: u64,
    /// u128 as decimal text (JSON numbers are not that wide everywhere).
    shuffle_word: String,
    mask_word: String,
    correct: u64,
}

/// Identifies a trial's training run: its resolved config, the data's digest and the number of
/// training images. A checkpoint loads only into a run with the same fingerprint.
pub fn fingerprint(cfg: &TrainConfig, data: &Dataset, train_images: usize) -> String {
    let mut h = Sha256::new();
    h.update(cfg.to_json().to_string());
    h.update(b"\n");
    h.update(data.sha256());
    h.update(format!("\n{train_images}"));
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Tensor `name` of `st` if it is there, refused if it has another type.
fn tensor<'a>(
    st: &'a SafeTensors<'a>,
    name: &str,
    dtype: Dtype,
) -> Result<Option<TensorView<'a>>, String> {
    match st.tensor(name) {
        Ok(t) if t.dtype() == dtype => Ok(Some(t)),
        Ok(t) => Err(format!(
            "tensor {name}: {:?}, expected {dtype:?}",
            t.dtype()
        )),
        Err(_) => Ok(None),
    }
}

/// Little-endian values of `N` bytes each.
fn words<T, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| from(c.try_into().expect("chunks of N bytes")))
        .collect()
}

impl Checkpoint {
    /// The checkpoint as a safetensors file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            epoch: self.at.epoch,
            batch: self.at.batch,
            fingerprint: self.fingerprint.clone(),
            steps: self.steps,
            shuffle_word: self.shuffle_word.to_string(),
            mask_word: self.mask_word.to_string(),
            correct: self.correct,
        };
        let history: Vec<u8> = self
            .history
            .iter()
            .flat_map(|m| {
                [
                    m.epoch as f64,
                    m.loss,
                    m.accuracy,
                    m.val_loss,
                    m.val_accuracy,
                    m.epoch_seconds,
                    m.samples_per_second,
                ]
            })
            .flat_map(f64::to_le_bytes)
            .collect();
        let mut tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            (
                "params",
                Dtype::F32,
                vec![self.params.len()],
                f32_bytes(&self.params),
            ),
            (
                "order",
                Dtype::U32,
                vec![self.order.len()],
                self.order.iter().flat_map(|i| i.to_le_bytes()).collect(),
            ),
            (
                "loss_sum",
                Dtype::F64,
                vec![1],
                self.loss_sum.to_le_bytes().to_vec(),
            ),
            (
                "history",
                Dtype::F64,
                vec![self.history.len(), HISTORY_COLUMNS],
                history,
            ),
        ];
        for (name, v) in [
            ("stats", &self.stats),
            ("optimizer.s1", &self.s1),
            ("optimizer.s2", &self.s2),
        ] {
            if !v.is_empty() {
                tensors.push((name, Dtype::F32, vec![v.len()], f32_bytes(v)));
            }
        }
        let views = tensors.iter().map(|(n, d, s, b)| {
            let view = TensorView::new(*d, s.clone(), b).expect("shape matches the data");
            (*n, view)
        });
        let meta = HashMap::from([(
            HEADER_KEY.to_string(),
            serde_json::to_string(&header).expect("a header serializes"),
        )]);
        safetensors::serialize(views, Some(meta)).expect("in-memory tensors serialize")
    }

    /// Reads a checkpoint from its bytes; says what is wrong otherwise (never panics).
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        let text = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(HEADER_KEY))
            .ok_or("no checkpoint header in its metadata")?;
        let h: Header =
            serde_json::from_str(text).map_err(|e| format!("checkpoint header: {e}"))?;
        if h.format != FORMAT || h.version != VERSION {
            return Err(format!(
                "format {:?} version {}, expected {FORMAT:?} version {VERSION}",
                h.format, h.version
            ));
        }
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
        let f32s = |name: &str| -> Result<Vec<f32>, String> {
            Ok(tensor(&st, name, Dtype::F32)?
                .map(|t| words(t.data(), f32::from_le_bytes))
                .unwrap_or_default())
        };
        let required = |name: &str, dtype: Dtype| {
            tensor(&st, name, dtype)?.ok_or_else(|| format!("tensor {name} is missing"))
        };
        let order = words(required("order", Dtype::U32)?.data(), u32::from_le_bytes);
        let loss: Vec<f64> = words(required("loss_sum", Dtype::F64)?.data(), f64::from_le_bytes);
        let loss_sum = *loss.first().ok_or("tensor loss_sum is empty")?;
        let hist = required("history", Dtype::F64)?;
        let shape = hist.shape();
        if shape.len() != 2 || shape[1] != HISTORY_COLUMNS || shape[0] != h.epoch {
            return Err(format!(
                "tensor history: shape {shape:?}, expected [{}, {HISTORY_COLUMNS}]",
                h.epoch
            ));
        }
        let history = words(hist.data(), f64::from_le_bytes)
            .chunks_exact(HISTORY_COLUMNS)
            .map(|r| EpochMetrics {
                epoch: r[0] as usize,
                loss: r[1],
                accuracy: r[2],
                val_loss: r[3],
                val_accuracy: r[4],
                epoch_seconds: r[5],
                samples_per_second: r[6],
            })
            .collect();
        let word = |s: &str, name: &str| {
            s.parse::<u128>()
                .map_err(|_| format!("checkpoint header: {name} {s:?} is not a word position"))
        };
        Ok(Checkpoint {
            at: Position {
                epoch: h.epoch,
                batch: h.batch,
            },
            fingerprint: h.fingerprint,
            params: words(required("params", Dtype::F32)?.data(), f32::from_le_bytes),
            stats: f32s("stats")?,
            steps: h.steps,
            s1: f32s("optimizer.s1")?,
            s2: f32s("optimizer.s2")?,
            order,
            shuffle_word: word(&h.shuffle_word, "shuffle_word")?,
            mask_word: word(&h.mask_word, "mask_word")?,
            loss_sum,
            correct: h.correct,
            history,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            at: Position { epoch: 2, batch: 7 },
            fingerprint: "ab".repeat(32),
            params: vec![0.1, -2.5, f32::MIN_POSITIVE, 3.0],
            stats: vec![],
            steps: 1234,
            s1: vec![1e-9, 2.0, 0.0, -0.0],
            s2: vec![],
            order: vec![3, 1, 0, 2],
            shuffle_word: u128::from(u64::MAX) * 3 + 17,
            mask_word: 5,
            // Not a short decimal: must come back bit for bit.
            loss_sum: 0.1 + 0.2 + 1e-17,
            correct: 99,
            history: (1..=2)
                .map(|e| EpochMetrics {
                    epoch: e,
                    loss: 1.0 / 3.0 * e as f64,
                    accuracy: 0.7,
                    val_loss: std::f64::consts::PI,
                    val_accuracy: 0.8,
                    epoch_seconds: 1.5,
                    samples_per_second: 1e5,
                })
                .collect(),
        }
    }

    #[test]
    fn a_checkpoint_comes_back_bit_for_bit() {
        let ck = sample();
        let back = Checkpoint::decode(&ck.encode()).unwrap();
        assert_eq!(back, ck);
        assert_eq!(back.loss_sum.to_bits(), ck.loss_sum.to_bits());
        assert_eq!(back.s1[3].to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn damaged_checkpoints_are_refused_with_the_reason() {
        let bytes = sample().encode();
        let e = Checkpoint::decode(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(e.contains("safetensors"), "{e}");
        let e = Checkpoint::decode(b"garbage").unwrap_err();
        assert!(e.contains("not a safetensors file"), "{e}");
        // A model's weights are a safetensors file, but not a checkpoint.
        let other = safetensors::serialize(
            [(
                "x",
                TensorView::new(Dtype::F32, vec![1], &[0u8; 4]).unwrap(),
            )],
            None,
        )
        .unwrap();
        let e = Checkpoint::decode(&other).unwrap_err();
        assert!(e.contains("no checkpoint header"), "{e}");
        // A history that does not match the epochs done.
        let mut ck = sample();
        ck.history.pop();
        let e = Checkpoint::decode(&ck.encode()).unwrap_err();
        assert!(e.contains("tensor history"), "{e}");
    }
}
