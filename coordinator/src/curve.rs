//! A trial's curve served at a bounded size (docs/API.md, "Curves"): each metric's points,
//! when there are more than its share of the points asked for, are cut into buckets by
//! position and each bucket gives its lowest and its highest point, with the metric's first
//! and last points always kept — so a spike or a dip survives sampling, as on W&B's charts.
//! [`Sampler`] reads the points once, in order, holding only what it keeps: it samples a
//! curve of ten million points in the store as cheaply in memory as one in memory.

use std::collections::HashMap;

/// Points a curve is served with when the client does not say (every metric together).
pub const DEFAULT_POINTS: u32 = 10_000;

/// Most points a client may ask one curve to be served with.
pub const MAX_POINTS: u32 = 200_000;

/// Most points one page of a curve holds (`GetCurve`).
pub const MAX_PAGE_POINTS: u32 = 100_000;

/// Fewest points a metric is sampled to, however many metrics share the budget.
const MIN_PER_METRIC: u64 = 8;

/// One point of a curve: (step, metric, value).
pub type CurvePoint = (u32, String, f64);

/// A curve as served: its points, how many it has in all, whether these are a sample.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Served {
    /// By step, then name.
    pub points: Vec<CurvePoint>,
    /// Points the curve has.
    pub total: u64,
    /// Whether `points` are a sample of them.
    pub sampled: bool,
}

/// The points a client asked for, bounded: 0 means [`DEFAULT_POINTS`].
pub fn asked(points: u32) -> u32 {
    match points {
        0 => DEFAULT_POINTS,
        n => n.min(MAX_POINTS),
    }
}

/// One metric's sampling: which of its points (by position) are kept.
#[derive(Debug)]
struct Series {
    /// How many points the metric has.
    count: u64,
    /// Buckets its points are cut into (0: every point is kept).
    buckets: u64,
    /// Position of the next point.
    seen: u64,
    /// The bucket being filled: its lowest and highest point.
    bucket: u64,
    low: Option<(u32, f64)>,
    high: Option<(u32, f64)>,
}

/// Samples a curve read once in order (by step, then name); see the module's notes.
#[derive(Debug)]
pub struct Sampler {
    series: HashMap<String, Series>,
    kept: Vec<CurvePoint>,
    sampled: bool,
}

impl Sampler {
    /// A sampler for metrics with these point counts, keeping about `points` in all.
    pub fn new(counts: impl IntoIterator<Item = (String, u64)>, points: u32) -> Self {
        let counts: Vec<(String, u64)> = counts.into_iter().collect();
        let share = (u64::from(points) / counts.len().max(1) as u64).max(MIN_PER_METRIC);
        let mut sampled = false;
        let series = counts
            .into_iter()
            .map(|(name, count)| {
                let buckets = if count > share {
                    sampled = true;
                    // Two points a bucket, and the first and last besides.
                    ((share - 2) / 2).max(1)
                } else {
                    0
                };
                let s = Series {
                    count,
                    buckets,
                    seen: 0,
                    bucket: 0,
                    low: None,
                    high: None,
                };
                (name, s)
            })
            .collect();
        Sampler {
            series,
            kept: Vec::new(),
            sampled,
        }
    }

    /// The next point (in order by step, then name). A metric not counted is skipped.
    pub fn push(&mut self, step: u32, name: &str, value: f64) {
        let Some(s) = self.series.get_mut(name) else {
            return;
        };
        let i = s.seen;
        s.seen += 1;
        if s.buckets == 0 || i == 0 || i + 1 >= s.count {
            if i + 1 >= s.count {
                flush(s, name, &mut self.kept);
            }
            self.kept.push((step, name.to_string(), value));
            return;
        }
        // Points 1 ..= count-2 share the buckets.
        let bucket = (i - 1) * s.buckets / (s.count - 2).max(1);
        if bucket != s.bucket {
            flush(s, name, &mut self.kept);
            s.bucket = bucket;
        }
        if s.low.is_none_or(|(_, v)| value < v) {
            s.low = Some((step, value));
        }
        if s.high.is_none_or(|(_, v)| value > v) {
            s.high = Some((step, value));
        }
    }

    /// The kept points, by step then name, and whether any metric was sampled.
    pub fn finish(mut self) -> (Vec<CurvePoint>, bool) {
        let names: Vec<String> = self.series.keys().cloned().collect();
        for name in names {
            if let Some(s) = self.series.get_mut(&name) {
                flush(s, &name, &mut self.kept);
            }
        }
        self.kept.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        self.kept.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        (self.kept, self.sampled)
    }
}

/// Moves a bucket's lowest and highest points to `kept`.
fn flush(s: &mut Series, name: &str, kept: &mut Vec<CurvePoint>) {
    for (step, value) in [s.low.take(), s.high.take()].into_iter().flatten() {
        kept.push((step, name.to_string(), value));
    }
}

/// Samples points held in memory (by step, then name) to about `points`.
pub fn sample<'a>(
    all: impl Iterator<Item = (u32, &'a str, f64)> + Clone,
    points: u32,
) -> (Vec<CurvePoint>, bool) {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for (_, name, _) in all.clone() {
        *counts.entry(name).or_default() += 1;
    }
    let mut s = Sampler::new(counts.into_iter().map(|(n, c)| (n.to_string(), c)), points);
    for (step, name, value) in all {
        s.push(step, name, value);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(n: u32) -> Vec<(u32, &'static str, f64)> {
        (1..=n)
            .flat_map(|s| {
                let x = f64::from(s);
                [("acc", x.sin()), ("loss", 1.0 / x)].map(move |(name, v)| (s, name, v))
            })
            .collect()
    }

    #[test]
    fn a_curve_within_its_budget_is_served_whole() {
        let c = curve(100);
        let (kept, sampled) = sample(c.iter().copied(), 1000);
        assert!(!sampled);
        assert_eq!(kept.len(), 200);
        assert!(kept
            .iter()
            .zip(&c)
            .all(|(a, b)| a.0 == b.0 && a.1 == b.1 && a.2 == b.2));
    }

    #[test]
    fn sampling_keeps_first_last_and_every_extreme_within_the_budget() {
        let mut c = curve(100_000);
        // A spike and a dip that any sampler by stride would most likely miss.
        for p in c.iter_mut() {
            if p.1 == "loss" && p.0 == 54_321 {
                p.2 = 99.0;
            }
            if p.1 == "acc" && p.0 == 77_777 {
                p.2 = -5.0;
            }
        }
        let (kept, sampled) = sample(c.iter().copied(), 1000);
        assert!(sampled);
        assert!(kept.len() <= 1000, "{} points", kept.len());
        assert!(kept.len() >= 900, "{} points", kept.len());
        for name in ["acc", "loss"] {
            let mine: Vec<&(u32, String, f64)> = kept.iter().filter(|p| p.1 == name).collect();
            assert_eq!(mine.first().unwrap().0, 1, "{name} keeps its first point");
            assert_eq!(
                mine.last().unwrap().0,
                100_000,
                "{name} keeps its last point"
            );
            assert!(
                mine.windows(2).all(|w| w[0].0 < w[1].0),
                "{name} in step order"
            );
            let all: Vec<f64> = c.iter().filter(|p| p.1 == name).map(|p| p.2).collect();
            let max = all.iter().copied().fold(f64::MIN, f64::max);
            let min = all.iter().copied().fold(f64::MAX, f64::min);
            assert!(mine.iter().any(|p| p.2 == max), "{name} keeps its highest");
            assert!(mine.iter().any(|p| p.2 == min), "{name} keeps its lowest");
        }
        assert!(kept.iter().any(|p| p.0 == 54_321 && p.2 == 99.0));
        assert!(kept.iter().any(|p| p.0 == 77_777 && p.2 == -5.0));
        // Every kept point is a real one.
        for p in &kept {
            let real = c.iter().find(|q| q.0 == p.0 && q.1 == p.1).unwrap();
            assert_eq!(real.2, p.2);
        }
    }

    #[test]
    fn many_metrics_each_keep_a_few_points_and_a_lone_point_survives() {
        let mut c: Vec<CurvePoint> = Vec::new();
        for s in 1..=1000u32 {
            for m in 0..200 {
                c.push((s, format!("m{m:03}"), f64::from(s * m)));
            }
        }
        c.push((1000, "z_once".into(), 7.0));
        c.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let (kept, _) = sample(c.iter().map(|p| (p.0, p.1.as_str(), p.2)), 400);
        assert!(kept.iter().any(|p| p.1 == "z_once" && p.2 == 7.0));
        for m in 0..200 {
            let n = kept.iter().filter(|p| p.1 == format!("m{m:03}")).count();
            assert!((2..=8).contains(&n), "m{m:03} kept {n}");
        }
    }

    #[test]
    fn the_budget_asked_for_is_bounded() {
        assert_eq!(asked(0), DEFAULT_POINTS);
        assert_eq!(asked(5), 5);
        assert_eq!(asked(u32::MAX), MAX_POINTS);
    }
}
