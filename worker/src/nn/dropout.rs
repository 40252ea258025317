//! Inverted dropout (Srivastava et al., 2014) after a hidden layer's activation, as PyTorch's
//! `nn.Dropout`: in training each unit is zeroed with probability `p` and the others are scaled
//! by `1 / (1 − p)`, so that at inference the layer is used as it is. The mask is drawn from the
//! trial's own dropout generator (one `f32` draw per unit, row by row), so a trial's masks are
//! the same on every machine and thread count.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Real;

/// Fills `mask` with 0 (probability `p`) or `1 / (1 − p)`.
pub fn draw<T: Real>(mask: &mut [T], p: f64, rng: &mut ChaCha8Rng) {
    let keep = T::c(1.0 / (1.0 - p));
    let p = p as f32;
    for m in mask.iter_mut() {
        *m = if rng.random::<f32>() < p {
            T::zero()
        } else {
            keep
        };
    }
}

/// `x *= mask`, element by element (the forward pass, and the backward pass of `∂L/∂a`).
pub fn apply<T: Real>(x: &mut [T], mask: &[T]) {
    for (x, &m) in x.iter_mut().zip(mask) {
        *x *= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn about_p_of_the_units_are_dropped_and_the_rest_scaled() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut mask = vec![0.0f32; 100_000];
        draw(&mut mask, 0.3, &mut rng);
        let dropped = mask.iter().filter(|&&m| m == 0.0).count();
        assert!((29_000..31_000).contains(&dropped), "{dropped}");
        assert!(mask
            .iter()
            .all(|&m| m == 0.0 || (m - 1.0 / 0.7).abs() < 1e-6));
        // The expectation of a unit is kept.
        let mean = mask.iter().map(|&m| f64::from(m)).sum::<f64>() / mask.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "{mean}");
        // Same generator, same mask.
        let mut again = vec![0.0f32; 100_000];
        draw(&mut again, 0.3, &mut ChaCha8Rng::seed_from_u64(5));
        assert_eq!(mask, again);
    }
}
