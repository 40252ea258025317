//! The tabulated Fashion-MNIST surrogate (bench/data/fashion-surrogate.json, built by
//! python/make_surrogate.py from a sweep our built-in trainer ran): the seed's search space,
//! each point's validation accuracy per epoch (that of its nearest trained trial) and its
//! parameter count. A mixed integer/categorical function `sweep-bench search` measures search
//! on, with and without early termination; python/surrogate.py reads the same file.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

/// The surrogate, as the file holds it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Surrogate {
    space: Vec<Dim>,
    epochs: Vec<u64>,
    curves: Vec<Vec<f64>>,
    table: Vec<usize>,
    param_count: Vec<f64>,
}

#[derive(Debug, serde::Deserialize)]
struct Dim {
    name: String,
    values: Vec<Value>,
}

impl Surrogate {
    /// Reads the file beside the benchmark's sources.
    pub(crate) fn load() -> Result<Surrogate> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-surrogate.json");
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        let s: Surrogate =
            serde_json::from_str(&text).with_context(|| path.display().to_string())?;
        let points: usize = s.space.iter().map(|d| d.values.len()).product();
        if s.table.len() != points
            || s.param_count.len() != points
            || s.table.iter().any(|&i| i >= s.curves.len())
        {
            return Err(anyhow!(
                "{}: table does not cover the space",
                path.display()
            ));
        }
        Ok(s)
    }

    /// The sweep config of the seed's space (`epochs` included), as YAML lines under
    /// `parameters:`.
    pub(crate) fn parameters_yaml(&self) -> String {
        let mut out = format!(
            "  epochs: {{values: {}}}\n",
            serde_json::to_string(&self.epochs).unwrap_or_default()
        );
        for d in &self.space {
            let values = serde_json::to_string(&d.values).unwrap_or_default();
            out.push_str(&format!("  {}: {{values: {values}}}\n", d.name));
        }
        out
    }

    fn point(&self, params: &Value) -> usize {
        let same = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        };
        self.space.iter().fold(0, |i, d| {
            let k = d
                .values
                .iter()
                .position(|v| same(v, &params[&d.name]))
                .unwrap_or_else(|| panic!("{} = {} is not in the space", d.name, params[&d.name]));
            i * d.values.len() + k
        })
    }

    /// The validation accuracy per epoch of a trial with `params` (as many epochs as its
    /// `epochs` says).
    pub(crate) fn curve(&self, params: &Value) -> &[f64] {
        let c = &self.curves[self.table[self.point(params)]];
        let epochs = params["epochs"].as_u64().unwrap_or(c.len() as u64) as usize;
        &c[..epochs.min(c.len())]
    }

    /// Its final validation error (1 − accuracy; the single-objective function).
    pub(crate) fn error(&self, params: &Value) -> f64 {
        1.0 - self.curve(params).last().copied().unwrap_or(0.0)
    }

    /// Its final validation error and its parameter count in units of 10⁵ (the two
    /// objectives).
    pub(crate) fn error_and_size(&self, params: &Value) -> Vec<f64> {
        vec![
            self.error(params),
            self.param_count[self.point(params)] / 1e5,
        ]
    }
}
