//! The multilayer perceptron: dense layers, activations, a softmax output, the two losses, the
//! initialisations, and exact backpropagation.
//!
//! Everything is generic over [`Real`] (`f32` for training, `f64` for gradient checks).
//! Parameters live in one flat buffer (each layer's weights, row-major `in × out`, then its
//! bias) so that an optimizer step is one pass over memory. All per-batch buffers live in a
//! [`Workspace`] allocated once per trial: the step loop allocates nothing of its own.
//!
//! Math (per batch of `B` rows, `L` dense layers, `z_l = a_{l-1} W_l + b_l`):
//! - hidden layers: `a_l = f(z_l)` with `f` in {identity, sigmoid, tanh, relu, leaky_relu, gelu,
//!   silu};
//! - output: `p = softmax(z_L)`, computed as `exp(z - max z) / Σ exp(z - max z)`;
//! - cross-entropy: `L = -(1/B) Σ_b log p_{b,y_b}` with `log p` from the log-sum-exp (never
//!   `log` of a rounded-to-zero probability), so `∂L/∂z = (p - onehot(y)) / B`;
//! - squared error: `L = (1/B) Σ_b Σ_k (p_{b,k} - onehot(y)_{b,k})²`, with the exact gradient
//!   through the softmax Jacobian: `g = 2 (p - y) / B`, `∂L/∂z_j = p_j (g_j - Σ_k p_k g_k)`;
//! - weight decay `λ` adds `λ/2 ‖W‖²` (weights, not biases) to the objective, i.e. `λ W` to the
//!   gradient; reported losses are the data term alone, comparable across `λ`;
//! - optionally, in each hidden layer: batch normalization of `z_l` before the activation
//!   ([`batch_norm`], its γ and β in the parameter buffer after the layer's bias, its running
//!   estimates in [`Mlp::stats`]) and dropout of `a_l` after it ([`dropout`]); both act as in
//!   training only in [`Mode::Train`].

pub mod batch_norm;
pub mod dropout;
pub mod kernels;

use std::fmt;

use ndarray::{s, Array2, ArrayView2, ArrayViewMut2};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// The floating-point types the engine runs in: `f32` (training) and `f64` (checks).
pub trait Real:
    num_traits::Float
    + ndarray::ScalarOperand
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
    + std::iter::Sum
    + Default
    + Send
    + Sync
    + fmt::Debug
    + fmt::Display
    + 'static
{
    /// Converts an `f64` constant (rounding for `f32`).
    fn c(x: f64) -> Self;
    /// Widens to `f64` (for metric sums).
    fn f64(self) -> f64;
    /// The error function (GELU's Φ), from libm.
    fn erf(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn c(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erff(self)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn c(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erf(self)
    }
}

/// Whether an activation's derivative needs its input `z` (the workspace then keeps each hidden
/// layer's `z`); the others' derivatives follow from their output.
fn needs_input(a: Activation) -> bool {
    matches!(a, Activation::Gelu | Activation::Silu)
}

pub use sweep_trainer::names::{Activation, Init, Loss};

/// Standard deviation of the `random` initialisation (the classic `0.01 · randn`).
pub const RANDOM_INIT_STD: f64 = 0.01;

/// Where one layer's weights and bias sit in the flat parameter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    /// Input width.
    pub fan_in: usize,
    /// Output width.
    pub fan_out: usize,
    /// Offset of the `fan_in × fan_out` row-major weight matrix.
    pub w: usize,
    /// Offset of the `fan_out` bias vector.
    pub b: usize,
    /// Offset of the batch normalization's γ (`fan_out`, then β), for a normalised layer.
    pub norm: Option<usize>,
    /// Offset of the running mean (`fan_out`, then the running variance) in [`Mlp::stats`],
    /// for a normalised layer.
    pub stats: Option<usize>,
}

impl LayerShape {
    /// The weights' range in the flat buffer.
    pub fn w_range(&self) -> std::ops::Range<usize> {
        self.w..self.w + self.fan_in * self.fan_out
    }
    /// The bias's range in the flat buffer.
    pub fn b_range(&self) -> std::ops::Range<usize> {
        self.b..self.b + self.fan_out
    }
    /// The batch normalization's γ and β, one after the other, for a normalised layer.
    pub fn norm_range(&self) -> Option<std::ops::Range<usize>> {
        self.norm.map(|g| g..g + 2 * self.fan_out)
    }
    /// Where the layer's parameters end in the flat buffer.
    fn end(&self) -> usize {
        self.norm_range().map_or(self.b + self.fan_out, |r| r.end)
    }
}

/// What the hidden layers have besides their dense map and activation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// Batch normalization before each hidden layer's activation.
    pub batch_norm: bool,
    /// The dropout rate after each hidden layer's activation (one per hidden layer, or none).
    pub dropout: Vec<f64>,
}

/// How a pass runs the network.
#[derive(Debug)]
pub enum Mode<'a> {
    /// Inference: batch normalization by its running estimates, no dropout.
    Eval,
    /// Training: batch normalization by the batch's statistics, dropout masks drawn from the
    /// generator, and the output delta left for [`Mlp::backward`].
    Train(&'a mut ChaCha8Rng),
}

/// A dense network with softmax output.
#[derive(Debug, Clone)]
pub struct Mlp<T: Real> {
    /// Widths: input, each hidden layer, classes.
    sizes: Vec<usize>,
    /// Each layer's place in `params`.
    layers: Vec<LayerShape>,
    /// Hidden-layer activation.
    activation: Activation,
    /// Dropout rate after each hidden layer (all zero: none).
    dropout: Vec<f64>,
    /// All weights and biases (and batch normalization's γ and β), layer by layer.
    pub params: Vec<T>,
    /// Batch normalization's running mean and variance, layer by layer (not trained by the
    /// optimizer; moved by [`Mlp::update_stats`]).
    pub stats: Vec<T>,
}

/// A batch-normalised layer's buffers in a [`Workspace`].
#[derive(Debug)]
struct NormBuffers<T> {
    normed: Array2<T>,
    mean: Vec<T>,
    var: Vec<T>,
    inv_std: Vec<T>,
}

/// Per-batch buffers for one network and a maximum batch size.
#[derive(Debug)]
pub struct Workspace<T: Real> {
    /// Largest batch the buffers hold.
    max_batch: usize,
    /// `acts[0]` is the input batch; `acts[l + 1]` the output of layer `l` (last: softmax).
    acts: Vec<Array2<T>>,
    /// `deltas[l]`: ∂loss/∂z of layer `l`.
    deltas: Vec<Array2<T>>,
    /// `inputs[l]`: `z` of hidden layer `l`, before its activation — only for an activation
    /// whose derivative needs it (GELU, SiLU); empty otherwise.
    inputs: Vec<Array2<T>>,
    /// Per hidden layer with dropout: the mask, and the activation before it (the activation's
    /// derivative needs it); empty otherwise.
    masks: Vec<(Array2<T>, Array2<T>)>,
    /// Per hidden layer with batch normalization: what the training pass keeps (`x̂`, the
    /// batch's mean, variance and `1/√(σ² + ε)`); empty otherwise.
    norms: Vec<NormBuffers<T>>,
    /// Predicted class of each row of the last forward pass.
    pub preds: Vec<u8>,
}

impl<T: Real> Workspace<T> {
    /// Buffers for `net` and batches of up to `max_batch` rows.
    pub fn new(net: &Mlp<T>, max_batch: usize) -> Self {
        let acts = net
            .sizes
            .iter()
            .map(|&w| Array2::zeros((max_batch, w)))
            .collect();
        let deltas = net.sizes[1..]
            .iter()
            .map(|&w| Array2::zeros((max_batch, w)))
            .collect();
        let hidden = &net.sizes[1..net.sizes.len() - 1];
        let inputs = if needs_input(net.activation) {
            hidden
                .iter()
                .map(|&w| Array2::zeros((max_batch, w)))
                .collect()
        } else {
            Vec::new()
        };
        let zeros = |w: usize| Array2::zeros((max_batch, w));
        let masks = if net.dropout.iter().any(|&p| p > 0.0) {
            hidden.iter().map(|&w| (zeros(w), zeros(w))).collect()
        } else {
            Vec::new()
        };
        let norms = net.layers[..hidden.len()]
            .iter()
            .filter(|l| l.norm.is_some())
            .map(|l| NormBuffers {
                normed: zeros(l.fan_out),
                mean: vec![T::zero(); l.fan_out],
                var: vec![T::zero(); l.fan_out],
                inv_std: vec![T::zero(); l.fan_out],
            })
            .collect();
        Workspace {
            max_batch,
            acts,
            deltas,
            inputs,
            masks,
            norms,
            preds: vec![0; max_batch],
        }
    }

    /// Largest batch these buffers hold.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The input rows of the next batch, to be filled by the caller.
    pub fn input_mut(&mut self, rows: usize) -> ArrayViewMut2<'_, T> {
        self.acts[0].slice_mut(s![..rows, ..])
    }

    /// Softmax outputs of the last forward pass.
    pub fn probs(&self, rows: usize) -> ArrayView2<'_, T> {
        let last = self.acts.len() - 1;
        self.acts[last].slice(s![..rows, ..])
    }
}

/// Sums over one batch from [`Mlp::forward_loss`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    /// Sum over rows of the per-sample data loss.
    pub loss_sum: f64,
    /// Rows whose arg-max class is the label.
    pub correct: usize,
}

impl<T: Real> Mlp<T> {
    /// A network with the given widths (`[inputs, hidden…, classes]`), initialised from `rng`.
    ///
    /// # Panics
    /// If fewer than two widths are given or any is zero (configs are validated before this).
    pub fn new<R: Rng + ?Sized>(
        sizes: &[usize],
        activation: Activation,
        init: Init,
        rng: &mut R,
    ) -> Self {
        Self::with_extras(sizes, activation, init, &Extras::default(), rng)
    }

    /// [`Mlp::new`] with batch normalization and dropout in the hidden layers as `extras` says.
    /// The weights are drawn exactly as by [`Mlp::new`] (γ starts at 1, β at 0).
    ///
    /// # Panics
    /// As [`Mlp::new`], or if `extras.dropout` is neither empty nor one rate per hidden layer,
    /// or a rate is outside [0, 1).
    pub fn with_extras<R: Rng + ?Sized>(
        sizes: &[usize],
        activation: Activation,
        init: Init,
        extras: &Extras,
        rng: &mut R,
    ) -> Self {
        assert!(sizes.len() >= 2 && sizes.iter().all(|&s| s > 0));
        let hidden = sizes.len() - 2;
        let dropout = if extras.dropout.is_empty() {
            vec![0.0; hidden]
        } else {
            extras.dropout.clone()
        };
        assert_eq!(dropout.len(), hidden, "one dropout rate per hidden layer");
        assert!(dropout.iter().all(|p| (0.0..1.0).contains(p)));
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        let (mut off, mut stats) = (0, 0);
        for (i, w) in sizes.windows(2).enumerate() {
            let normed = extras.batch_norm && i < hidden;
            let b = off + w[0] * w[1];
            let l = LayerShape {
                fan_in: w[0],
                fan_out: w[1],
                w: off,
                b,
                norm: normed.then_some(b + w[1]),
                stats: normed.then_some(stats),
            };
            if normed {
                stats += 2 * w[1];
            }
            off = l.end();
            layers.push(l);
        }
        let mut params = vec![T::zero(); off];
        let mut running = vec![T::zero(); stats];
        for l in &layers {
            if let (Some(g), Some(s)) = (l.norm, l.stats) {
                params[g..g + l.fan_out].fill(T::one());
                running[s + l.fan_out..s + 2 * l.fan_out].fill(T::one());
            }
        }
        for l in &layers {
            let (fi, fo) = (l.fan_in as f64, l.fan_out as f64);
            for p in &mut params[l.w_range()] {
                let v = match init {
                    Init::Random => RANDOM_INIT_STD * rng.sample::<f64, _>(StandardNormal),
                    Init::Xavier => {
                        let lim = (6.0 / (fi + fo)).sqrt();
                        rng.random_range(-lim..lim)
                    }
                    Init::He => (2.0 / fi).sqrt() * rng.sample::<f64, _>(StandardNormal),
                };
                *p = T::c(v);
            }
        }
        Mlp {
            sizes: sizes.to_vec(),
            layers,
            activation,
            dropout,
            params,
            stats: running,
        }
    }

    /// Batch normalization and dropout, as the network was built with them.
    pub fn extras(&self) -> Extras {
        Extras {
            batch_norm: self.layers.iter().any(|l| l.norm.is_some()),
            dropout: self.dropout.clone(),
        }
    }

    /// Moves batch normalization's running estimates towards the statistics of the last
    /// training pass over `rows` rows in `ws`.
    pub fn update_stats(&mut self, ws: &Workspace<T>, rows: usize) {
        let normed = self
            .layers
            .iter()
            .filter_map(|l| l.stats.map(|s| (s, l.fan_out)));
        for ((s, w), nb) in normed.zip(&ws.norms) {
            let (mean, var) = self.stats[s..s + 2 * w].split_at_mut(w);
            batch_norm::update_running(mean, var, &nb.mean, &nb.var, rows);
        }
    }

    /// Widths: input, hidden layers, classes.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Each layer's place in the flat parameter buffer.
    pub fn layers(&self) -> &[LayerShape] {
        &self.layers
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// The hidden-layer activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Runs the first `rows` input rows of `ws` through the network, writes softmax
    /// probabilities and predictions into `ws`, and returns the batch's loss sum and correct
    /// count. In [`Mode::Train`], also leaves `∂loss/∂z_L` (the loss *mean*'s gradient) and
    /// what batch normalization and dropout need in `ws` for [`Mlp::backward`].
    ///
    /// # Panics
    /// If `rows` exceeds the workspace or a label is not below the class count.
    pub fn forward_loss(
        &self,
        ws: &mut Workspace<T>,
        rows: usize,
        labels: &[u8],
        loss: Loss,
        mut mode: Mode<'_>,
    ) -> BatchStats {
        assert!(rows <= ws.max_batch && labels.len() >= rows);
        let n_layers = self.layers.len();
        for (l, shape) in self.layers.iter().enumerate() {
            let (head, tail) = ws.acts.split_at_mut(l + 1);
            let x = head[l].slice(s![..rows, ..]);
            let mut z = tail[0].slice_mut(s![..rows, ..]);
            let bias = &self.params[shape.b_range()];
            for mut row in z.rows_mut() {
                if let Some(r) = row.as_slice_mut() {
                    r.copy_from_slice(bias);
                }
            }
            let w = ArrayView2::from_shape(
                (shape.fan_in, shape.fan_out),
                &self.params[shape.w_range()],
            )
            .expect("layer shape matches its buffer");
            kernels::matmul(z.view_mut(), x, w, true);
            if l + 1 < n_layers {
                let zs = z.as_slice_mut().expect("workspace rows are contiguous");
                if let (Some(g), Some(st)) = (shape.norm, shape.stats) {
                    let width = shape.fan_out;
                    let (gamma, beta) = self.params[g..g + 2 * width].split_at(width);
                    match mode {
                        Mode::Train(_) => {
                            let nb = &mut ws.norms[l];
                            let saved = batch_norm::Saved {
                                normed: rows_of(&mut nb.normed, rows),
                                mean: &mut nb.mean,
                                var: &mut nb.var,
                                inv_std: &mut nb.inv_std,
                            };
                            batch_norm::forward_train(zs, width, gamma, beta, saved);
                        }
                        Mode::Eval => {
                            let (mean, var) = self.stats[st..st + 2 * width].split_at(width);
                            batch_norm::forward_eval(zs, width, gamma, beta, mean, var);
                        }
                    }
                }
                if let Some(keep) = ws.inputs.get_mut(l) {
                    keep.slice_mut(s![..rows, ..])
                        .as_slice_mut()
                        .expect("workspace rows are contiguous")
                        .copy_from_slice(zs);
                }
                match self.activation {
                    Activation::Identity => {}
                    Activation::Sigmoid => kernels::sigmoid(zs),
                    Activation::Tanh => kernels::tanh(zs),
                    Activation::Relu => kernels::relu(zs),
                    Activation::LeakyRelu => kernels::leaky_relu(zs),
                    Activation::Gelu => kernels::gelu(zs),
                    Activation::Silu => kernels::silu(zs),
                }
                if let (Mode::Train(rng), Some((mask, kept))) = (&mut mode, ws.masks.get_mut(l)) {
                    if self.dropout[l] > 0.0 {
                        let mask = rows_of(mask, rows);
                        dropout::draw(mask, self.dropout[l], rng);
                        rows_of(kept, rows).copy_from_slice(zs);
                        dropout::apply(zs, mask);
                    }
                }
            }
        }
        let backprop = matches!(mode, Mode::Train(_));
        // Softmax, loss and (optionally) the output delta, one row at a time.
        let k = self.sizes[n_layers];
        let out = ws.acts[n_layers]
            .as_slice_mut()
            .expect("workspace rows are contiguous");
        let delta = ws.deltas[n_layers - 1]
            .as_slice_mut()
            .expect("workspace rows are contiguous");
        let inv_b = T::one() / T::c(rows as f64);
        let two = T::c(2.0);
        let mut stats = BatchStats::default();
        for r in 0..rows {
            let z = &mut out[r * k..(r + 1) * k];
            let y = usize::from(labels[r]);
            assert!(y < k, "label {y} out of range for {k} classes");
            let mut m = z[0];
            let mut arg = 0;
            for (j, &v) in z.iter().enumerate() {
                // `!(v <= m)` also moves past NaN so it reaches the loss.
                if v > m || m.is_nan() {
                    m = v;
                    arg = j;
                }
            }
            ws.preds[r] = arg as u8;
            let zy = z[y];
            let mut sum = T::zero();
            for v in z.iter_mut() {
                *v = (*v - m).exp();
                sum += *v;
            }
            let inv = T::one() / sum;
            for v in z.iter_mut() {
                *v *= inv;
            }
            if arg == y {
                stats.correct += 1;
            }
            match loss {
                Loss::CrossEntropy => {
                    stats.loss_sum += (sum.ln() + m - zy).f64();
                    if backprop {
                        let d = &mut delta[r * k..(r + 1) * k];
                        for (j, (d, &p)) in d.iter_mut().zip(z.iter()).enumerate() {
                            let t = if j == y { T::one() } else { T::zero() };
                            *d = (p - t) * inv_b;
                        }
                    }
                }
                Loss::MeanSquaredError => {
                    let mut l = T::zero();
                    let mut pg = T::zero();
                    for (j, &p) in z.iter().enumerate() {
                        let e = if j == y { p - T::one() } else { p };
                        l += e * e;
                        pg += p * two * e;
                    }
                    stats.loss_sum += l.f64();
                    if backprop {
                        let d = &mut delta[r * k..(r + 1) * k];
                        for (j, (d, &p)) in d.iter_mut().zip(z.iter()).enumerate() {
                            let e = if j == y { p - T::one() } else { p };
                            *d = p * (two * e - pg) * inv_b;
                        }
                    }
                }
            }
        }
        stats
    }

    /// Backpropagates the output delta left by [`Mlp::forward_loss`] (in [`Mode::Train`]) and
    /// writes the gradient of the batch's mean loss into `grads` (same layout as `params`).
    /// Weight decay is not included here; the optimizer adds it.
    pub fn backward(&self, ws: &mut Workspace<T>, rows: usize, grads: &mut [T]) {
        assert_eq!(grads.len(), self.params.len());
        for l in (0..self.layers.len()).rev() {
            let shape = self.layers[l];
            let (dlo, dhi) = ws.deltas.split_at_mut(l);
            let delta = dhi[0].slice(s![..rows, ..]);
            let x = ws.acts[l].slice(s![..rows, ..]);
            let (gw, gb) = grads[shape.w..shape.b + shape.fan_out].split_at_mut(shape.b - shape.w);
            let gw = ArrayViewMut2::from_shape((shape.fan_in, shape.fan_out), gw)
                .expect("layer shape matches its buffer");
            kernels::matmul(gw, x.t(), delta, false);
            kernels::column_sums(
                gb,
                delta.as_slice().expect("workspace rows are contiguous"),
                shape.fan_out,
            );
            if l > 0 {
                let w = ArrayView2::from_shape(
                    (shape.fan_in, shape.fan_out),
                    &self.params[shape.w_range()],
                )
                .expect("layer shape matches its buffer");
                let mut prev = dlo[l - 1].slice_mut(s![..rows, ..]);
                kernels::matmul(prev.view_mut(), delta, w.t(), false);
                let d = prev.as_slice_mut().expect("workspace rows are contiguous");
                // The output of hidden layer l - 1 before dropout, which the activation's
                // derivative needs; dropout's own derivative is its mask.
                let a = match ws.masks.get(l - 1) {
                    Some((mask, kept)) if self.dropout[l - 1] > 0.0 => {
                        dropout::apply(d, rows_of_ref(mask, rows));
                        rows_of_ref(kept, rows)
                    }
                    _ => rows_of_ref(&ws.acts[l], rows),
                };
                // The input of the layer whose output `a` is (hidden layer l - 1).
                let z = || {
                    ws.inputs[l - 1]
                        .slice(s![..rows, ..])
                        .to_slice()
                        .expect("workspace rows are contiguous")
                };
                match self.activation {
                    Activation::Identity => {}
                    Activation::Sigmoid => kernels::sigmoid_backward(d, a),
                    Activation::Tanh => kernels::tanh_backward(d, a),
                    Activation::Relu => kernels::relu_backward(d, a),
                    Activation::LeakyRelu => kernels::leaky_relu_backward(d, a),
                    Activation::Gelu => kernels::gelu_backward(d, z()),
                    Activation::Silu => kernels::silu_backward(d, z()),
                }
                let below = self.layers[l - 1];
                if let Some(g) = below.norm {
                    let (w, nb) = (below.fan_out, &ws.norms[l - 1]);
                    let (dgamma, dbeta) = grads[g..g + 2 * w].split_at_mut(w);
                    let normed = rows_of_ref(&nb.normed, rows);
                    let gamma = &self.params[g..g + w];
                    batch_norm::backward(d, w, normed, gamma, &nb.inv_std, dgamma, dbeta);
                }
            }
        }
    }

    /// `λ/2 ‖W‖²` over all weight matrices (the decay term of the objective).
    pub fn decay_penalty(&self, weight_decay: f64) -> f64 {
        let sq: f64 = self
            .layers
            .iter()
            .flat_map(|l| self.params[l.w_range()].iter())
            .map(|&w| w.f64() * w.f64())
            .sum();
        0.5 * weight_decay * sq
    }
}

/// The first `rows` rows of a workspace buffer, as one slice.
fn rows_of<T: Real>(m: &mut Array2<T>, rows: usize) -> &mut [T] {
    let w = m.ncols();
    &mut m.as_slice_mut().expect("workspace buffers are contiguous")[..rows * w]
}

/// The first `rows` rows of a workspace buffer, as one slice.
fn rows_of_ref<T: Real>(m: &Array2<T>, rows: usize) -> &[T] {
    &m.as_slice().expect("workspace buffers are contiguous")[..rows * m.ncols()]
}

#[cfg(test)]
mod tests;
