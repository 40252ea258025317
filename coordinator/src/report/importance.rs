//! Parameter importance for the sweep metric, by first-order variance decomposition (the
//! fANOVA idea without the forest): for each parameter, the trials are grouped by its value
//! (categorical values, or up to [`BINS`] quantile bins of a numeric one), and its importance is
//! the share of the metric's variance explained by the group means — the correlation ratio
//! η² = Σ nᵍ (ȳᵍ − ȳ)² / Σ (y − ȳ)². The JSON gives η² and η² normalised to sum to 1 over the
//! parameters, and, for numeric parameters, the Pearson correlation of the value (its log when
//! the values span more than two decades) with the metric. A conditional parameter (`when:`,
//! absent from the trials it was inactive in) is judged on the trials it was active in: its η²
//! there, times the share of trials those are (it cannot explain more of the sweep than the
//! trials it was in).

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Most groups a numeric parameter is cut into.
pub const BINS: usize = 5;

/// One parameter's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    /// Dotted parameter name.
    pub name: String,
    /// η²: the share of the metric's variance its groups explain, in [0, 1].
    pub eta_squared: f64,
    /// η² over the sum of all parameters' η² (0 when nothing explains anything).
    pub importance: f64,
    /// Pearson correlation with the metric (numeric parameters with ≥ 2 distinct values).
    pub correlation: Option<f64>,
    /// Distinct values seen.
    pub distinct: usize,
    /// "numeric" or "categorical".
    pub kind: &'static str,
    /// Trials it was in (all of them, but for a conditional parameter).
    pub trials: usize,
}

fn key(v: &Value) -> String {
    v.to_string()
}

/// Importances of every parameter in `rows` (flat params, metric value), most important first.
pub fn importances(rows: &[(BTreeMap<String, Value>, f64)]) -> Vec<Importance> {
    let names: std::collections::BTreeSet<&String> = rows.iter().flat_map(|r| r.0.keys()).collect();
    let n = rows.len() as f64;
    let mean = rows.iter().map(|r| r.1).sum::<f64>() / n.max(1.0);
    let total: f64 = rows.iter().map(|r| (r.1 - mean).powi(2)).sum();
    let mut out: Vec<Importance> = names
        .into_iter()
        .map(|name| {
            let vals: Vec<(&Value, f64)> = rows
                .iter()
                .filter_map(|r| r.0.get(name).map(|v| (v, r.1)))
                .collect();
            let mut distinct: Vec<String> = vals.iter().map(|(v, _)| key(v)).collect();
            distinct.sort();
            distinct.dedup();
            let numeric: Option<Vec<(f64, f64)>> = vals
                .iter()
                .map(|(v, y)| v.as_f64().map(|x| (x, *y)))
                .collect();
            let kind = if numeric.is_some() && distinct.len() > 1 {
                "numeric"
            } else {
                "categorical"
            };
            // Groups: by value when few, else quantile bins of the numeric value.
            let mut groups: BTreeMap<String, (f64, f64)> = BTreeMap::new();
            match (&numeric, distinct.len() > BINS) {
                (Some(xs), true) => {
                    let mut sorted: Vec<f64> = xs.iter().map(|p| p.0).collect();
                    sorted.sort_by(f64::total_cmp);
                    let edges: Vec<f64> =
                        (1..BINS).map(|b| sorted[b * sorted.len() / BINS]).collect();
                    for (x, y) in xs {
                        let bin = edges.iter().filter(|e| x >= e).count();
                        let g = groups.entry(bin.to_string()).or_default();
                        g.0 += 1.0;
                        g.1 += y;
                    }
                }
                _ => {
                    for (v, y) in &vals {
                        let g = groups.entry(key(v)).or_default();
                        g.0 += 1.0;
                        g.1 += y;
                    }
                }
            }
            // Over the trials that have it (all, but for a conditional parameter).
            let m = vals.len() as f64;
            let (sub_mean, sub_total) = if vals.len() == rows.len() {
                (mean, total)
            } else {
                let sm = vals.iter().map(|v| v.1).sum::<f64>() / m.max(1.0);
                (sm, vals.iter().map(|v| (v.1 - sm).powi(2)).sum())
            };
            let between: f64 = groups
                .values()
                .map(|(c, s)| c * (s / c - sub_mean).powi(2))
                .sum();
            let eta_squared = if sub_total > 0.0 && vals.len() >= 2 {
                (between / sub_total).clamp(0.0, 1.0) * m / n
            } else {
                0.0
            };
            let correlation = numeric
                .as_ref()
                .filter(|_| kind == "numeric")
                .and_then(|xs| pearson(xs));
            Importance {
                name: name.clone(),
                eta_squared,
                importance: 0.0,
                correlation,
                distinct: distinct.len(),
                kind,
                trials: vals.len(),
            }
        })
        .collect();
    let sum: f64 = out.iter().map(|i| i.eta_squared).sum();
    for i in &mut out {
        i.importance = if sum > 0.0 { i.eta_squared / sum } else { 0.0 };
    }
    out.sort_by(|a, b| {
        b.importance
            .total_cmp(&a.importance)
            .then(a.name.cmp(&b.name))
    });
    out
}

/// Pearson correlation of (x, y), x on a log scale when it is positive and spans > 100×.
fn pearson(xy: &[(f64, f64)]) -> Option<f64> {
    let log = xy.iter().all(|p| p.0 > 0.0) && {
        let (lo, hi) = xy.iter().fold((f64::INFINITY, 0.0f64), |(l, h), p| {
            (l.min(p.0), h.max(p.0))
        });
        hi / lo > 100.0
    };
    let pts: Vec<(f64, f64)> = xy
        .iter()
        .map(|&(x, y)| (if log { x.ln() } else { x }, y))
        .collect();
    let n = pts.len() as f64;
    if n < 2.0 {
        return None;
    }
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in &pts {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// The JSON written beside `importance.svg`: over `trials` of the sweep's `ranked` trials
/// (all of them, or a sample evenly spaced by rank).
pub fn to_json(metric: &str, trials: usize, ranked: usize, imps: &[Importance]) -> Value {
    json!({
        "schema_version": 1,
        "metric": metric,
        "trials": trials,
        "ranked_trials": ranked,
        "method": "first-order variance decomposition: eta_squared is the share of the metric's variance explained by the parameter's groups (its values, or 5 quantile bins of a numeric parameter); importance is eta_squared normalised to sum to 1; a conditional parameter's eta_squared is taken over its active_trials, times their share of the trials; correlation is Pearson's r of the value (log when it spans > 100x) with the metric",
        "parameters": imps.iter().map(|i| json!({
            "name": i.name,
            "importance": i.importance,
            "eta_squared": i.eta_squared,
            "correlation": i.correlation,
            "distinct_values": i.distinct,
            "kind": i.kind,
            "active_trials": i.trials,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(a: f64, b: &str, c: f64, y: f64) -> (BTreeMap<String, Value>, f64) {
        (
            [
                ("a".to_string(), json!(a)),
                ("b".to_string(), json!(b)),
                ("c".to_string(), json!(c)),
            ]
            .into(),
            y,
        )
    }

    #[test]
    fn the_parameter_that_drives_the_metric_ranks_first_and_shares_sum_to_one() {
        // y depends strongly on a, weakly on b, not at all on c (constant).
        let rows: Vec<_> = (0..40)
            .map(|i| {
                let a = i as f64 / 4.0;
                let b = if i % 2 == 0 { "x" } else { "y" };
                let y = 2.0 * a + if b == "x" { 0.5 } else { 0.0 } + ((i * 7) % 3) as f64 * 0.1;
                row(a, b, 1.0, y)
            })
            .collect();
        let imps = importances(&rows);
        assert_eq!(imps.len(), 3);
        assert_eq!(imps[0].name, "a");
        assert!(imps[0].eta_squared > 0.9, "{imps:?}");
        assert!(imps[0].correlation.unwrap() > 0.95);
        let c = imps.iter().find(|i| i.name == "c").unwrap();
        assert_eq!(c.eta_squared, 0.0);
        assert_eq!(c.correlation, None);
        let b = imps.iter().find(|i| i.name == "b").unwrap();
        assert!(b.eta_squared < 0.1 && b.kind == "categorical");
        let sum: f64 = imps.iter().map(|i| i.importance).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        let j = to_json("loss", 40, 40, &imps);
        assert_eq!(j["parameters"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn no_variance_gives_zero_everywhere() {
        let rows: Vec<_> = (0..5).map(|i| row(i as f64, "x", 1.0, 0.5)).collect();
        let imps = importances(&rows);
        assert!(imps
            .iter()
            .all(|i| i.importance == 0.0 && i.eta_squared == 0.0));
        assert!(importances(&[]).is_empty());
    }

    #[test]
    fn a_conditional_parameter_is_judged_on_the_trials_it_was_in() {
        // beta1 exists only with adam (half the trials) and decides the metric there.
        let rows: Vec<(BTreeMap<String, Value>, f64)> = (0..20)
            .map(|i| {
                let mut p = BTreeMap::new();
                let adam = i % 2 == 0;
                p.insert(
                    "optimizer".to_string(),
                    json!(if adam { "adam" } else { "sgd" }),
                );
                let mut y = 0.5;
                if adam {
                    let b = if i % 4 == 0 { 0.9 } else { 0.5 };
                    p.insert("beta1".to_string(), json!(b));
                    y = b;
                }
                (p, y)
            })
            .collect();
        let imps = importances(&rows);
        let beta1 = imps.iter().find(|i| i.name == "beta1").unwrap();
        assert_eq!(beta1.trials, 10);
        // Within adam it explains everything; adam is half the trials.
        assert!((beta1.eta_squared - 0.5).abs() < 1e-12, "{beta1:?}");
        assert_eq!(imps[0].name, "beta1", "{imps:?}");
    }
}
