//! Batch normalization (Ioffe & Szegedy, 2015) of a hidden layer's pre-activations, as
//! PyTorch's `BatchNorm1d` with its defaults (ε = 1e-5, momentum 0.1, γ = 1 and β = 0 at the
//! start):
//!
//! - training: per column `j` of the batch `z` (`N` rows), `μ_j = (1/N) Σ z`,
//!   `σ²_j = (1/N) Σ (z − μ_j)²`, `x̂ = (z − μ_j) / √(σ²_j + ε)`, `y = γ_j x̂ + β_j`; the running
//!   estimates move as `m ← (1 − 0.1) m + 0.1 μ`, `v ← (1 − 0.1) v + 0.1 σ² N / (N − 1)`;
//! - inference: `y = γ (z − m) / √(v + ε) + β`;
//! - gradient: `∂L/∂β_j = Σ d`, `∂L/∂γ_j = Σ d x̂`,
//!   `∂L/∂z = γ_j / (N √(σ²_j + ε)) · (N d − ∂L/∂β_j − x̂ ∂L/∂γ_j)`.
//!
//! Every sum runs over the rows in order, so results do not depend on the machine. Matrices are
//! row-major `rows × cols` slices.

use super::Real;

/// ε added to the variance.
pub const EPS: f64 = 1e-5;
/// Weight of the current batch in the running estimates.
pub const MOMENTUM: f64 = 0.1;

/// What a training pass keeps for the backward pass and the running estimates.
#[derive(Debug)]
pub struct Saved<'a, T> {
    /// `x̂`, the normalised input (`rows × cols`).
    pub normed: &'a mut [T],
    /// The batch mean of each column.
    pub mean: &'a mut [T],
    /// The batch's biased variance of each column.
    pub var: &'a mut [T],
    /// `1 / √(σ² + ε)` of each column.
    pub inv_std: &'a mut [T],
}

/// Normalises `z` in place by the batch's own statistics, then scales and shifts it.
pub fn forward_train<T: Real>(z: &mut [T], cols: usize, gamma: &[T], beta: &[T], s: Saved<'_, T>) {
    let rows = z.len() / cols;
    let n = T::c(rows as f64);
    s.mean.iter_mut().for_each(|m| *m = T::zero());
    for row in z.chunks_exact(cols) {
        for (m, &v) in s.mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    s.mean.iter_mut().for_each(|m| *m /= n);
    s.var.iter_mut().for_each(|v| *v = T::zero());
    for row in z.chunks_exact(cols) {
        for ((v, &x), &m) in s.var.iter_mut().zip(row).zip(s.mean.iter()) {
            *v += (x - m) * (x - m);
        }
    }
    let eps = T::c(EPS);
    for (v, inv) in s.var.iter_mut().zip(s.inv_std.iter_mut()) {
        *v /= n;
        *inv = T::one() / (*v + eps).sqrt();
    }
    for (row, xh) in z
        .chunks_exact_mut(cols)
        .zip(s.normed.chunks_exact_mut(cols))
    {
        for j in 0..cols {
            let h = (row[j] - s.mean[j]) * s.inv_std[j];
            xh[j] = h;
            row[j] = gamma[j] * h + beta[j];
        }
    }
}

/// Normalises `z` in place by the running estimates, then scales and shifts it.
pub fn forward_eval<T: Real>(
    z: &mut [T],
    cols: usize,
    gamma: &[T],
    beta: &[T],
    mean: &[T],
    var: &[T],
) {
    let eps = T::c(EPS);
    for row in z.chunks_exact_mut(cols) {
        for j in 0..cols {
            row[j] = gamma[j] * (row[j] - mean[j]) / (var[j] + eps).sqrt() + beta[j];
        }
    }
}

/// Moves the running estimates towards the batch's (`rows` rows).
pub fn update_running<T: Real>(
    run_mean: &mut [T],
    run_var: &mut [T],
    mean: &[T],
    var: &[T],
    rows: usize,
) {
    let m = T::c(MOMENTUM);
    let keep = T::one() - m;
    // The unbiased variance, as PyTorch keeps; one row has none to speak of.
    let unbias = T::c(if rows > 1 {
        rows as f64 / (rows - 1) as f64
    } else {
        1.0
    });
    for (r, &b) in run_mean.iter_mut().zip(mean) {
        *r = keep * *r + m * b;
    }
    for (r, &b) in run_var.iter_mut().zip(var) {
        *r = keep * *r + m * b * unbias;
    }
}

/// Turns `d = ∂L/∂y` into `∂L/∂z` in place and writes `∂L/∂γ`, `∂L/∂β`.
pub fn backward<T: Real>(
    d: &mut [T],
    cols: usize,
    normed: &[T],
    gamma: &[T],
    inv_std: &[T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    let rows = d.len() / cols;
    let n = T::c(rows as f64);
    dgamma.iter_mut().for_each(|g| *g = T::zero());
    dbeta.iter_mut().for_each(|g| *g = T::zero());
    for (row, xh) in d.chunks_exact(cols).zip(normed.chunks_exact(cols)) {
        for j in 0..cols {
            dbeta[j] += row[j];
            dgamma[j] += row[j] * xh[j];
        }
    }
    for (row, xh) in d.chunks_exact_mut(cols).zip(normed.chunks_exact(cols)) {
        for j in 0..cols {
            let k = gamma[j] * inv_std[j] / n;
            row[j] = k * (n * row[j] - dbeta[j] - xh[j] * dgamma[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_normalised_and_the_running_estimates_move_as_pytorch_does() {
        // Two columns, three rows: column 0 is 1, 2, 3 (mean 2, variance 2/3), column 1 is
        // constant (variance 0).
        let mut z: Vec<f64> = vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0];
        let (gamma, beta) = ([2.0, 1.0], [0.5, -1.0]);
        let (mut normed, mut mean, mut var, mut inv) =
            (vec![0.0f64; 6], [0.0f64; 2], [0.0f64; 2], [0.0f64; 2]);
        forward_train(
            &mut z,
            2,
            &gamma,
            &beta,
            Saved {
                normed: &mut normed,
                mean: &mut mean,
                var: &mut var,
                inv_std: &mut inv,
            },
        );
        assert_eq!(mean, [2.0, 5.0]);
        assert!((var[0] - 2.0 / 3.0).abs() < 1e-15 && var[1] == 0.0);
        let s = 1.0 / (2.0f64 / 3.0 + EPS).sqrt();
        for (r, want) in [-s, 0.0, s].iter().enumerate() {
            assert!((normed[2 * r] - want).abs() < 1e-12);
            assert!((z[2 * r] - (2.0 * want + 0.5)).abs() < 1e-12);
            // A constant column becomes β.
            assert_eq!(z[2 * r + 1], -1.0);
        }
        let (mut rm, mut rv) = ([0.0, 0.0], [1.0, 1.0]);
        update_running(&mut rm, &mut rv, &mean, &var, 3);
        // m = 0.9·0 + 0.1·2; v = 0.9·1 + 0.1·(2/3)·3/2.
        assert!((rm[0] - 0.2).abs() < 1e-15 && (rm[1] - 0.5).abs() < 1e-15);
        assert!((rv[0] - 1.0).abs() < 1e-15 && (rv[1] - 0.9).abs() < 1e-15);
        let mut x = vec![2.2, 0.0];
        forward_eval(&mut x, 2, &gamma, &beta, &rm, &rv);
        assert!((x[0] - (2.0 * 2.0 / (1.0 + EPS).sqrt() + 0.5)).abs() < 1e-12);
    }
}
