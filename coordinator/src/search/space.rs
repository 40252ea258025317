//! The search space as the bayes models (TPE and GP) see it: every flat parameter one
//! dimension (continuous ones in their natural space, log space for the log families;
//! categorical values by index), with the encoding of a parameter object into coordinates and
//! back, draws from the prior, and the configurations already tried.

use std::collections::{BTreeMap, HashSet};

use rand::Rng;
use rand_distr::StandardNormal;
use serde_json::{Map, Value};

use crate::config::params::{flat_sorted, insert_path, number, Distribution, ParamSpec};

#[derive(Debug, Clone)]
pub(crate) enum Dim {
    /// Continuous in [lo, hi] (internal space); `log`: exp on the way out; `q`: quantum in
    /// the output space; `int`: round to an integer.
    Cont {
        lo: f64,
        hi: f64,
        log: bool,
        q: Option<f64>,
        int: bool,
    },
    /// One of `values`.
    Cat { values: Vec<Value> },
}

/// The search space, flattened.
#[derive(Debug, Clone)]
pub struct Space {
    names: Vec<Vec<String>>,
    pub(crate) dims: Vec<Dim>,
}

impl Space {
    /// The dimensions of a parameter set.
    pub fn new(params: &BTreeMap<String, ParamSpec>) -> Space {
        let mut names = Vec::new();
        let mut dims = Vec::new();
        for (path, spec) in flat_sorted(params) {
            let dim = match spec {
                ParamSpec::Constant(v) => Dim::Cat {
                    values: vec![v.clone()],
                },
                ParamSpec::Values { values, .. } => Dim::Cat {
                    values: values.clone(),
                },
                ParamSpec::Nested(_) => continue,
                &ParamSpec::Dist {
                    dist,
                    min,
                    max,
                    q,
                    mu,
                    sigma,
                    int,
                    ..
                } => {
                    use Distribution::*;
                    let qq = matches!(
                        dist,
                        QUniform | QLogUniform | QLogUniformValues | QNormal | QLogNormal | QBeta
                    )
                    .then_some(q);
                    match dist {
                        Uniform | QUniform | IntUniform => Dim::Cont {
                            lo: min,
                            hi: max,
                            log: false,
                            q: qq,
                            int: int || dist == IntUniform,
                        },
                        LogUniform | QLogUniform => Dim::Cont {
                            lo: min,
                            hi: max,
                            log: true,
                            q: qq,
                            int,
                        },
                        LogUniformValues | QLogUniformValues => Dim::Cont {
                            lo: min.ln(),
                            hi: max.ln(),
                            log: true,
                            q: qq,
                            int,
                        },
                        InvLogUniform => Dim::Cont {
                            lo: -max,
                            hi: -min,
                            log: true,
                            q: None,
                            int: false,
                        },
                        InvLogUniformValues => Dim::Cont {
                            lo: min.ln(),
                            hi: max.ln(),
                            log: true,
                            q: None,
                            int: false,
                        },
                        Normal | QNormal => Dim::Cont {
                            lo: mu - 4.0 * sigma,
                            hi: mu + 4.0 * sigma,
                            log: false,
                            q: qq,
                            int,
                        },
                        LogNormal | QLogNormal => Dim::Cont {
                            lo: mu - 4.0 * sigma,
                            hi: mu + 4.0 * sigma,
                            log: true,
                            q: qq,
                            int,
                        },
                        Beta | QBeta => Dim::Cont {
                            lo: 0.0,
                            hi: 1.0,
                            log: false,
                            q: qq,
                            int: false,
                        },
                    }
                }
            };
            names.push(path);
            dims.push(dim);
        }
        Space { names, dims }
    }

    /// Number of distinct configurations, if finite and small (categorical and integer dims).
    pub fn finite_size(&self) -> Option<u64> {
        let mut n: u64 = 1;
        for d in &self.dims {
            let k = match d {
                Dim::Cat { values } => values.len() as u64,
                Dim::Cont {
                    lo,
                    hi,
                    log: false,
                    q: None,
                    int: true,
                } => (hi - lo).floor() as u64 + 1,
                Dim::Cont {
                    lo,
                    hi,
                    log: false,
                    q: Some(q),
                    ..
                } => ((hi - lo) / q).floor() as u64 + 1,
                _ => return None,
            };
            n = n.checked_mul(k)?;
        }
        Some(n)
    }

    /// Which dimensions `params` holds (a conditional parameter left out is not active).
    pub(crate) fn present(&self, params: &Value) -> Vec<bool> {
        self.names
            .iter()
            .map(|path| path.iter().try_fold(params, |v, p| v.get(p)).is_some())
            .collect()
    }

    /// Internal coordinates of a parameter object, if every dimension can be read.
    pub fn encode(&self, params: &Value) -> Option<Vec<f64>> {
        let mut x = Vec::with_capacity(self.dims.len());
        for (path, d) in self.names.iter().zip(&self.dims) {
            let mut v = params;
            for p in path {
                v = v.get(p)?;
            }
            x.push(match d {
                Dim::Cat { values } => values.iter().position(|c| c == v)? as f64,
                Dim::Cont { log, lo, hi, .. } => {
                    let f = v.as_f64()?;
                    let t = if *log {
                        if f > 0.0 {
                            f.ln()
                        } else {
                            return None;
                        }
                    } else {
                        f
                    };
                    t.clamp(*lo, *hi)
                }
            });
        }
        Some(x)
    }

    /// The parameter object of internal coordinates (rounded, quantized, nested).
    pub fn decode(&self, x: &[f64]) -> Value {
        let mut obj = Map::new();
        for ((path, d), &xi) in self.names.iter().zip(&self.dims).zip(x) {
            let v = match d {
                Dim::Cat { values } => values[(xi.round() as usize).min(values.len() - 1)].clone(),
                Dim::Cont { log, q, int, .. } => {
                    let mut f = if *log { xi.exp() } else { xi };
                    if let Some(q) = q {
                        f = (f / q).round() * q;
                    }
                    if *int && q.is_none() {
                        f = f.round();
                    }
                    number(f, *int)
                }
            };
            insert_path(&mut obj, path, v);
        }
        Value::Object(obj)
    }

    /// A point near `base`: Gaussian steps of `scale`·range on continuous dimensions, a
    /// random other value with probability `scale`·2 on categorical ones.
    pub(crate) fn perturb<R: Rng + ?Sized>(
        &self,
        base: &[f64],
        scale: f64,
        rng: &mut R,
    ) -> Vec<f64> {
        self.dims
            .iter()
            .zip(base)
            .map(|(d, &b)| match d {
                Dim::Cat { values } => {
                    if rng.random::<f64>() < 2.0 * scale {
                        rng.random_range(0..values.len()) as f64
                    } else {
                        b
                    }
                }
                Dim::Cont { lo, hi, .. } => {
                    let z: f64 = rng.sample(StandardNormal);
                    (b + z * scale * (hi - lo)).clamp(*lo, *hi)
                }
            })
            .collect()
    }

    pub(crate) fn sample_prior<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        self.dims
            .iter()
            .map(|d| match d {
                Dim::Cat { values } => rng.random_range(0..values.len()) as f64,
                Dim::Cont { lo, hi, .. } => lo + (hi - lo) * rng.random::<f64>(),
            })
            .collect()
    }
}

/// Standard normal CDF (erf from Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
pub(crate) fn phi(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    let erf = if x >= 0.0 { y } else { -y };
    0.5 * (1.0 + erf)
}

/// A finished or running trial as the bayes models see it.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// Its parameters.
    pub params: &'a Value,
    /// Goal-signed value (smaller is better); `None` for a running trial.
    pub loss: Option<f64>,
}

pub(crate) fn random_fresh<R: Rng + ?Sized>(
    space: &Space,
    rng: &mut R,
    fresh: &dyn Fn(&Value) -> bool,
) -> Value {
    let mut v = space.decode(&space.sample_prior(rng));
    for _ in 0..1000 {
        if fresh(&v) {
            return v;
        }
        v = space.decode(&space.sample_prior(rng));
    }
    v
}

/// The configurations already run or running, keyed by their internal coordinates (one
/// encoding per history entry, which the model needs anyway, instead of a JSON string each).
pub(crate) struct Seen<'s> {
    space: &'s Space,
    keys: HashSet<Vec<u64>>,
    /// Every configuration of a finite space has been tried: duplicates are allowed again.
    exhausted: bool,
}

impl<'s> Seen<'s> {
    pub(crate) fn new(space: &'s Space, encoded: &[Option<Vec<f64>>]) -> Self {
        let keys: HashSet<Vec<u64>> = encoded.iter().flatten().map(|x| key(x)).collect();
        let exhausted = space.finite_size().is_some_and(|n| keys.len() as u64 >= n);
        Seen {
            space,
            keys,
            exhausted,
        }
    }

    /// Whether `v` may be suggested: not run or running yet, or the space is exhausted.
    pub(crate) fn fresh(&self, v: &Value) -> bool {
        self.exhausted
            || self
                .space
                .encode(v)
                .is_none_or(|x| !self.keys.contains(&key(&x)))
    }
}

fn key(x: &[f64]) -> Vec<u64> {
    // `+ 0.0` folds −0.0 into 0.0.
    x.iter().map(|v| (v + 0.0).to_bits()).collect()
}
