//! The hot kernels: matrix products through the `gemm` crate (single-threaded, SIMD chosen at
//! run time) and the element-wise loops, compiled twice (baseline and AVX2+FMA) and picked at
//! run time so one binary runs everywhere and is fast where the CPU allows.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::Real;

/// `c = a · b` (or `c += a · b` when `accumulate`), on the calling thread.
///
/// Transposed operands are free: pass `x.t()` and the strides say so.
///
/// # Panics
/// If the shapes do not conform (a programming error, never caused by input data).
pub fn matmul<T: Real>(
    mut c: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    accumulate: bool,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "matmul inner dimensions differ");
    assert_eq!(c.dim(), (m, n), "matmul output shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(T::zero());
        }
        return;
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the pointers and strides come from live ndarray views whose shapes were checked
    // above; `c` is borrowed mutably, so it cannot alias `a` or `b`. `T` is f32 or f64 (the
    // only `Real` types), which gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Runs `$body` compiled for AVX2+FMA when the CPU has it, else for the baseline target.
macro_rules! dispatch {
    ($name:ident, fn($($arg:ident : $ty:ty),*) $body:block) => {{
        #[inline(always)]
        fn generic<T: Real>($($arg: $ty),*) $body

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Real>($($arg: $ty),*) {
            generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports the features the function was compiled for.
                return unsafe { avx2($($arg),*) };
            }
        }
        generic($($arg),*)
    }};
}

pub(crate) use dispatch;

/// Adds `wd · w` to `g` (L2 weight decay folded into the gradient).
pub fn add_decay<T: Real>(g: &mut [T], w: &[T], wd: T) {
    dispatch!(add_decay, fn(g: &mut [T], w: &[T], wd: T) {
        for (g, &w) in g.iter_mut().zip(w) {
            *g += wd * w;
        }
    })
}

/// `x = max(x, 0)` in place.
pub fn relu<T: Real>(x: &mut [T]) {
    dispatch!(relu, fn(x: &mut [T]) {
        for v in x.iter_mut() {
            // Written so that NaN propagates (a NaN must reach the loss and stop training).
            if *v < T::zero() {
                *v = T::zero();
            }
        }
    })
}

/// `d *= (a > 0)`: the ReLU derivative from its output.
pub fn relu_backward<T: Real>(d: &mut [T], a: &[T]) {
    dispatch!(relu_backward, fn(d: &mut [T], a: &[T]) {
        for (d, &a) in d.iter_mut().zip(a) {
            if a <= T::zero() {
                *d = T::zero();
            }
        }
    })
}

/// The slope of leaky ReLU below zero (PyTorch's default `negative_slope`).
pub const LEAKY_SLOPE: f64 = 0.01;

/// `x = x` above zero, `0.01 x` below, in place.
pub fn leaky_relu<T: Real>(x: &mut [T]) {
    dispatch!(leaky_relu, fn(x: &mut [T]) {
        let slope = T::c(LEAKY_SLOPE);
        for v in x.iter_mut() {
            // NaN propagates (it fails the comparison and is kept).
            if *v < T::zero() {
                *v *= slope;
            }
        }
    })
}

/// `d *= 1` where the output is above zero, `0.01` elsewhere: the leaky ReLU derivative from
/// its output (which keeps the input's sign).
pub fn leaky_relu_backward<T: Real>(d: &mut [T], a: &[T]) {
    dispatch!(leaky_relu_backward, fn(d: &mut [T], a: &[T]) {
        let slope = T::c(LEAKY_SLOPE);
        for (d, &a) in d.iter_mut().zip(a) {
            if a <= T::zero() {
                *d *= slope;
            }
        }
    })
}

/// `x = x Φ(x)`, Φ(x) = (1 + erf(x/√2)) / 2, in place.
pub fn gelu<T: Real>(x: &mut [T]) {
    let half = T::c(0.5);
    let inv_sqrt2 = T::c(std::f64::consts::FRAC_1_SQRT_2);
    for v in x.iter_mut() {
        *v = *v * half * (T::one() + (*v * inv_sqrt2).erf());
    }
}

/// `d *= Φ(z) + z φ(z)`: the GELU derivative from its input `z`.
pub fn gelu_backward<T: Real>(d: &mut [T], z: &[T]) {
    let half = T::c(0.5);
    let inv_sqrt2 = T::c(std::f64::consts::FRAC_1_SQRT_2);
    // 1/√(2π)
    let inv_sqrt_2pi = T::c(0.398_942_280_401_432_7);
    for (d, &z) in d.iter_mut().zip(z) {
        let cdf = half * (T::one() + (z * inv_sqrt2).erf());
        let pdf = inv_sqrt_2pi * (-half * z * z).exp();
        *d *= cdf + z * pdf;
    }
}

/// `x = x σ(x)`, in place.
pub fn silu<T: Real>(x: &mut [T]) {
    for v in x.iter_mut() {
        *v = *v / (T::one() + (-*v).exp());
    }
}

/// `d *= σ(z) (1 + z (1 − σ(z)))`: the SiLU derivative from its input `z`.
pub fn silu_backward<T: Real>(d: &mut [T], z: &[T]) {
    for (d, &z) in d.iter_mut().zip(z) {
        let s = T::one() / (T::one() + (-z).exp());
        *d *= s * (T::one() + z * (T::one() - s));
    }
}

/// `d *= a (1 - a)`: the sigmoid derivative from its output.
pub fn sigmoid_backward<T: Real>(d: &mut [T], a: &[T]) {
    dispatch!(sigmoid_backward, fn(d: &mut [T], a: &[T]) {
        for (d, &a) in d.iter_mut().zip(a) {
            *d *= a * (T::one() - a);
        }
    })
}

/// `d *= 1 - a²`: the tanh derivative from its output.
pub fn tanh_backward<T: Real>(d: &mut [T], a: &[T]) {
    dispatch!(tanh_backward, fn(d: &mut [T], a: &[T]) {
        for (d, &a) in d.iter_mut().zip(a) {
            *d *= T::one() - a * a;
        }
    })
}

/// `x = 1 / (1 + e^(-x))` in place.
pub fn sigmoid<T: Real>(x: &mut [T]) {
    for v in x.iter_mut() {
        *v = T::one() / (T::one() + (-*v).exp());
    }
}

/// `x = tanh(x)` in place.
pub fn tanh<T: Real>(x: &mut [T]) {
    for v in x.iter_mut() {
        *v = v.tanh();
    }
}

/// Converts bytes to floats in `[0, 1]`.
pub fn bytes_to_unit<T: Real>(dst: &mut [T], src: &[u8]) {
    dispatch!(bytes_to_unit, fn(dst: &mut [T], src: &[u8]) {
        let scale = T::c(1.0 / 255.0);
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = T::c(f64::from(s)) * scale;
        }
    })
}

/// Column sums of the first `rows` rows of a row-major `rows × cols` matrix into `out`.
pub fn column_sums<T: Real>(out: &mut [T], m: &[T], cols: usize) {
    dispatch!(column_sums, fn(out: &mut [T], m: &[T], cols: usize) {
        out.iter_mut().for_each(|o| *o = T::zero());
        for row in m.chunks_exact(cols) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn matmul_matches_naive_with_transposes() {
        let a = Array2::from_shape_fn((5, 7), |(i, j)| (i * 7 + j) as f64 * 0.1 - 1.0);
        let b = Array2::from_shape_fn((7, 3), |(i, j)| (i as f64 - j as f64) * 0.3);
        let mut c = Array2::<f64>::zeros((5, 3));
        matmul(c.view_mut(), a.view(), b.view(), false);
        let want = a.dot(&b);
        assert!((&c - &want).iter().all(|d| d.abs() < 1e-12));
        // Transposed operands and accumulation.
        let at = a.t().to_owned();
        matmul(c.view_mut(), at.t(), b.view(), true);
        assert!((&c - &(2.0 * &want)).iter().all(|d| d.abs() < 1e-12));
        let mut ct = Array2::<f64>::zeros((3, 5));
        matmul(ct.view_mut(), b.t(), a.t(), false);
        assert!((&ct - &want.t()).iter().all(|d| d.abs() < 1e-12));
    }

    #[test]
    fn relu_keeps_nan() {
        let mut x = [-1.0f32, 0.5, f32::NAN];
        relu(&mut x);
        assert_eq!(x[0], 0.0);
        assert_eq!(x[1], 0.5);
        assert!(x[2].is_nan());
    }

    #[test]
    fn new_activations_match_their_definitions() {
        // The definitions at these points, from Python's math module (C libm's erf and exp).
        let z = [-2.0f64, -0.5, 0.0, 1.0, 3.0];
        let mut l = z;
        leaky_relu(&mut l);
        assert_eq!(l, [-0.02, -0.005, 0.0, 1.0, 3.0]);
        let mut g = z;
        gelu(&mut g);
        let gelu_ref = [
            -0.045_500_263_896_358_42,
            -0.154_268_769_362_993_44,
            0.0,
            0.841_344_746_068_542_9,
            2.995_950_305_905_11,
        ];
        let mut s = z;
        silu(&mut s);
        let silu_ref = [
            -0.238_405_844_044_235_1,
            -0.188_770_334_399_072_7,
            0.0,
            0.731_058_578_630_004_9,
            2.857_722_380_467_299_8,
        ];
        for i in 0..z.len() {
            assert!(
                (g[i] - gelu_ref[i]).abs() < 1e-12,
                "gelu({}) = {}",
                z[i],
                g[i]
            );
            assert!(
                (s[i] - silu_ref[i]).abs() < 1e-12,
                "silu({}) = {}",
                z[i],
                s[i]
            );
        }
        let mut x = [f32::NAN, -1.0];
        leaky_relu(&mut x);
        assert!(x[0].is_nan() && x[1] == -0.01);
    }
}
