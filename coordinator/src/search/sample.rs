//! Random search: one independent draw of every parameter from its distribution.

use std::collections::BTreeMap;

use rand::Rng;
use rand_distr::Distribution as _;
use serde_json::{Map, Value};

use crate::config::params::{number, Distribution, ParamSpec};

/// One random draw of every parameter (in sorted order, so a given RNG state gives the same
/// draw on every machine).
pub fn draw<R: Rng + ?Sized>(params: &BTreeMap<String, ParamSpec>, rng: &mut R) -> Value {
    let mut obj = Map::new();
    for (name, spec) in params {
        obj.insert(name.clone(), sample_one(spec, rng));
    }
    Value::Object(obj)
}

fn sample_one<R: Rng + ?Sized>(spec: &ParamSpec, rng: &mut R) -> Value {
    use Distribution::*;
    match spec {
        ParamSpec::Constant(v) => v.clone(),
        ParamSpec::Values {
            values,
            probabilities,
        } => {
            let i = match probabilities {
                None => rng.random_range(0..values.len()),
                Some(ps) => {
                    let u: f64 = rng.random();
                    let mut acc = 0.0;
                    let mut pick = values.len() - 1;
                    for (i, p) in ps.iter().enumerate() {
                        acc += p;
                        if u < acc {
                            pick = i;
                            break;
                        }
                    }
                    pick
                }
            };
            values[i].clone()
        }
        ParamSpec::Nested(inner) => draw(inner, rng),
        &ParamSpec::Dist {
            dist,
            min,
            max,
            q,
            mu,
            sigma,
            a,
            b,
            int,
            ..
        } => {
            let u = |rng: &mut R, lo: f64, hi: f64| lo + (hi - lo) * rng.random::<f64>();
            let quant = |x: f64| (x / q).round() * q;
            let normal =
                |rng: &mut R| rand_distr::Normal::new(mu, sigma).map_or(mu, |n| n.sample(rng));
            let beta = |rng: &mut R| rand_distr::Beta::new(a, b).map_or(0.5, |d| d.sample(rng));
            let x = match dist {
                Uniform => u(rng, min, max),
                IntUniform => return Value::from(rng.random_range((min as i64)..=(max as i64))),
                QUniform => quant(u(rng, min, max)),
                LogUniform => u(rng, min, max).exp(),
                LogUniformValues => u(rng, min.ln(), max.ln()).exp(),
                QLogUniform => quant(u(rng, min, max).exp()),
                QLogUniformValues => quant(u(rng, min.ln(), max.ln()).exp()),
                InvLogUniform => (-u(rng, min, max)).exp(),
                InvLogUniformValues => 1.0 / u(rng, (1.0 / max).ln(), (1.0 / min).ln()).exp(),
                Normal => normal(rng),
                QNormal => quant(normal(rng)),
                LogNormal => normal(rng).exp(),
                QLogNormal => quant(normal(rng).exp()),
                Beta => beta(rng),
                QBeta => quant(beta(rng)),
            };
            number(x, int)
        }
    }
}
