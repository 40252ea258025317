//! `coordinator report`: the pictures and the one-file HTML report of a sweep, from what the
//! coordinator stores (the leaderboard, the top trials' curves, the best trial's confusion
//! matrix). Files: `confusion_best.png` and `.svg`, `curves.svg`, `parallel.svg`,
//! `importance.svg` and `importance.json`, `report.html` (self-contained: inline SVG and CSS, no
//! network).

pub mod importance;
pub mod media;
pub mod plots;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
use sweep_proto::pb;

use crate::export;

/// Trials whose curves are drawn.
pub const TOP_CURVES: usize = 8;

/// What a report is made from.
#[derive(Debug, Clone)]
pub struct ReportData {
    /// The leaderboard (sweep info and every trial, ranked).
    pub leaderboard: pb::LeaderboardResponse,
    /// Details (curves) of the top trials, best first; the first carries the confusion matrix.
    pub top: Vec<pb::TrialDetail>,
    /// What the best trial's program logged besides numbers ([`media`]).
    pub media: Vec<media::Media>,
}

/// A report's data from a leaderboard: `get` fetches one trial's details (over gRPC, or from the
/// service in process), for the best `details` ranked trials in rank order; `file` one of a
/// trial's kept files (the best trial's media, when its program logged any).
pub async fn gather<E, Fut, FileFut>(
    leaderboard: pb::LeaderboardResponse,
    details: usize,
    mut get: impl FnMut(u64) -> Fut,
    mut file: impl FnMut(u64, String) -> FileFut,
) -> Result<ReportData, E>
where
    Fut: std::future::Future<Output = Result<pb::TrialDetail, E>>,
    FileFut: std::future::Future<Output = Result<Vec<u8>, E>>,
{
    let ranked: Vec<u64> = leaderboard
        .trials
        .iter()
        .filter(|t| t.rank > 0)
        .take(details)
        .map(|t| t.trial)
        .collect();
    let mut top = Vec::with_capacity(ranked.len());
    for n in ranked {
        top.push(get(n).await?);
    }
    let mut chosen = Vec::new();
    if let Some(best) = top.first() {
        let listed: Vec<String> = best.files.iter().map(|f| f.path.clone()).collect();
        let trial = best.summary.as_ref().map_or(0, |s| s.trial);
        if listed.iter().any(|p| p == media::INDEX) {
            let index = file(trial, media::INDEX.to_string()).await?;
            let mut bytes = 0;
            for mut m in media::choose(&index, &listed) {
                let size = best
                    .files
                    .iter()
                    .find(|f| f.path == m.path)
                    .map_or(0, |f| f.bytes as usize);
                if bytes + size > media::MAX_BYTES {
                    break;
                }
                bytes += size;
                m.data = file(trial, m.path.clone()).await?;
                chosen.push(m);
            }
        }
    }
    Ok(ReportData {
        leaderboard,
        top,
        media: chosen,
    })
}

/// Flat params of a trial (dotted names).
fn params_of(t: &pb::TrialSummary) -> BTreeMap<String, Value> {
    export::flat_params(t).into_iter().collect()
}

/// Most logged keys the report's leaderboard shows besides the metric.
const MAX_LOGGED_COLUMNS: usize = 6;

/// The keys the trials logged besides the metric and the parameters' names, the usual ones
/// first (test_accuracy, val_accuracy, val_loss, epoch, epochs), then by name; at most
/// [`MAX_LOGGED_COLUMNS`].
fn logged_keys(lb: &pb::LeaderboardResponse, metric: &str, params: &[String]) -> Vec<String> {
    const FIRST: [&str; 5] = [
        "test_accuracy",
        "val_accuracy",
        "val_loss",
        "epoch",
        "epochs",
    ];
    let mut keys: Vec<String> = lb
        .trials
        .iter()
        .flat_map(|t| t.metrics.keys())
        .filter(|k| k.as_str() != metric && !k.starts_with('_') && !params.contains(k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let place = |k: &String| FIRST.iter().position(|f| f == k).unwrap_or(FIRST.len());
    keys.sort_by(|a, b| place(a).cmp(&place(b)).then_with(|| a.cmp(b)));
    keys.truncate(MAX_LOGGED_COLUMNS);
    keys
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Drops the XML prolog so an SVG document can sit inline in HTML.
fn inline_svg(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// The files of a report, in the order they are written.
pub const FILES: [&str; 8] = [
    "confusion_best.svg",
    "confusion_best.png",
    "pareto.svg",
    "curves.svg",
    "parallel.svg",
    "importance.json",
    "importance.svg",
    "report.html",
];

/// Every report file in memory, as `(name, bytes)` in the order of `FILES`; the confusion
/// matrix files only when the best trial has one, the Pareto front only for a sweep with
/// several objectives.
pub fn render(data: &ReportData) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let f = Figures::new(data);
    let mut out = Vec::new();
    let confusion_svg = f.confusion_svg()?;
    if let Some(s) = &confusion_svg {
        out.push(("confusion_best.svg", s.clone().into_bytes()));
    }
    if let Some(p) = f.confusion_png()? {
        out.push(("confusion_best.png", p));
    }
    let pareto_svg = f.pareto_svg()?;
    if let Some(s) = &pareto_svg {
        out.push(("pareto.svg", s.clone().into_bytes()));
    }
    let curves_svg = f.curves_svg()?;
    out.push(("curves.svg", curves_svg.clone().into_bytes()));
    let parallel_svg = f.parallel_svg()?;
    out.push(("parallel.svg", parallel_svg.clone().into_bytes()));
    out.push(("importance.json", f.importance_json().into_bytes()));
    let imp_svg = f.importance_svg()?;
    out.push(("importance.svg", imp_svg.clone().into_bytes()));
    let html = html(
        data,
        &[
            (
                "Best trial's confusion matrix (test set)",
                confusion_svg.as_deref(),
            ),
            (
                "The Pareto front (the first two objectives)",
                pareto_svg.as_deref(),
            ),
            ("Learning curves of the top trials", Some(&curves_svg)),
            ("Parameters and the metric", Some(&parallel_svg)),
            ("Parameter importance", Some(&imp_svg)),
        ],
    );
    out.push(("report.html", html.into_bytes()));
    Ok(out)
}

/// One report file by name, drawing only what it needs; `Ok(None)` for a name that is not a
/// report file, or a confusion file when the best trial has no matrix.
pub fn file(data: &ReportData, name: &str) -> Result<Option<Vec<u8>>, String> {
    let f = Figures::new(data);
    Ok(match name {
        "confusion_best.svg" => f.confusion_svg()?.map(String::into_bytes),
        "confusion_best.png" => f.confusion_png()?,
        "pareto.svg" => f.pareto_svg()?.map(String::into_bytes),
        "curves.svg" => Some(f.curves_svg()?.into_bytes()),
        "parallel.svg" => Some(f.parallel_svg()?.into_bytes()),
        "importance.json" => Some(f.importance_json().into_bytes()),
        "importance.svg" => Some(f.importance_svg()?.into_bytes()),
        "report.html" => render(data)?
            .into_iter()
            .find(|(n, _)| *n == "report.html")
            .map(|(_, b)| b),
        _ => None,
    })
}

/// The title and matrix of one trial's confusion figure.
pub fn confusion_title(
    sweep: &pb::SweepInfo,
    trial: u64,
    best: bool,
    c: &pb::ConfusionMatrix,
) -> String {
    format!(
        "{}: {}trial {trial}, test set ({} images)",
        if sweep.name.is_empty() {
            &sweep.id
        } else {
            &sweep.name
        },
        if best { "best " } else { "" },
        c.counts.iter().sum::<u64>()
    )
}

/// A confusion matrix drawn as SVG.
pub fn confusion_svg(title: &str, c: &pb::ConfusionMatrix) -> Result<String, String> {
    plots::svg(plots::confusion_size(c.labels.len()), |root| {
        plots::confusion(root, title, &c.labels, &c.counts)
    })
}

/// A confusion matrix drawn as PNG.
pub fn confusion_png(title: &str, c: &pb::ConfusionMatrix) -> Result<Vec<u8>, String> {
    plots::png(plots::confusion_size(c.labels.len()), |root| {
        plots::confusion(root, title, &c.labels, &c.counts)
    })
}

/// Most ranked trials the parallel view and the importances use; more are sampled evenly by
/// rank (the statistics need no more, and the pictures cannot show more).
pub const MAX_FIGURE_TRIALS: usize = 10_000;

/// Which of `n` ranked trials (by position, 0 the best) a figure of at most `k` uses: all of
/// them, or `k` evenly spaced from the best.
pub fn sample(n: usize, k: usize) -> std::collections::BTreeSet<usize> {
    if n <= k {
        return (0..n).collect();
    }
    (0..k).map(|j| j * n / k).collect()
}

/// The figures of one report, each drawn on demand.
struct Figures<'a> {
    data: &'a ReportData,
    sweep: pb::SweepInfo,
    metric: String,
    maximize: bool,
    /// Ranked trials with a finite metric: the parallel view and the importances.
    rows: Vec<(BTreeMap<String, Value>, f64)>,
}

impl<'a> Figures<'a> {
    fn new(data: &'a ReportData) -> Self {
        let lb = &data.leaderboard;
        let sweep = lb.sweep.clone().unwrap_or_default();
        let metric = sweep.metric.clone();
        let maximize = sweep.goal != "minimize";
        let ranked: Vec<&pb::TrialSummary> = lb.trials.iter().filter(|t| t.rank > 0).collect();
        let keep = sample(ranked.len(), MAX_FIGURE_TRIALS);
        let rows = ranked
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .filter_map(|(_, t)| {
                let m = t.metrics.get(&metric).copied()?;
                m.is_finite().then(|| (params_of(t), m))
            })
            .collect();
        Figures {
            data,
            sweep,
            metric,
            maximize,
            rows,
        }
    }

    /// The best trial's confusion matrix and its title.
    fn confusion(&self) -> Option<(String, &'a pb::ConfusionMatrix)> {
        let d = self.data.top.first()?;
        let c = d.confusion.as_ref()?;
        let n = d.summary.as_ref().map_or(0, |s| s.trial);
        Some((confusion_title(&self.sweep, n, true, c), c))
    }

    fn confusion_svg(&self) -> Result<Option<String>, String> {
        self.confusion()
            .map(|(t, c)| confusion_svg(&t, c))
            .transpose()
    }

    fn confusion_png(&self) -> Result<Option<Vec<u8>>, String> {
        self.confusion()
            .map(|(t, c)| confusion_png(&t, c))
            .transpose()
    }

    /// Curves of the top trials: the sweep metric and a loss.
    fn curves_svg(&self) -> Result<String, String> {
        let data = self.data;
        let metric = &self.metric;
        let loss_name = if metric.contains("loss") {
            "loss"
        } else {
            "val_loss"
        };
        // Legends name the trial and the parameters that differ between the plotted trials.
        let shown: Vec<BTreeMap<String, Value>> = data
            .top
            .iter()
            .take(TOP_CURVES)
            .map(|d| d.summary.as_ref().map(params_of).unwrap_or_default())
            .collect();
        let varying: Vec<String> = shown
            .first()
            .map(|first| {
                first
                    .keys()
                    .filter(|k| shown.iter().any(|p| p.get(*k) != first.get(*k)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let label = |i: usize, trial: u64| {
            let mut l = format!("trial {trial}");
            let parts: Vec<String> = varying
                .iter()
                .take(3)
                .filter_map(|k| {
                    let v = match shown[i].get(k)? {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let v: String = v.chars().take(28).collect();
                    Some(format!("{k}={v}"))
                })
                .collect();
            if !parts.is_empty() {
                l.push_str(": ");
                l.push_str(&parts.join(", "));
            }
            l
        };
        let mut panels = Vec::new();
        for name in [metric.as_str(), loss_name] {
            let cs: Vec<plots::Curve> = data
                .top
                .iter()
                .take(TOP_CURVES)
                .enumerate()
                .map(|(i, d)| plots::Curve {
                    label: label(i, d.summary.as_ref().map_or(0, |s| s.trial)),
                    points: d
                        .curve
                        .iter()
                        .filter(|p| p.name == name)
                        .map(|p| (f64::from(p.step), p.value))
                        .collect(),
                })
                .filter(|c| !c.points.is_empty())
                .collect();
            if !cs.is_empty() && !panels.iter().any(|(n, _): &(String, _)| n == name) {
                panels.push((name.to_string(), cs));
            }
        }
        let n_curves = panels.first().map_or(0, |p| p.1.len());
        plots::svg((1200, plots::curves_height(n_curves)), |root| {
            plots::curves(root, &panels)
        })
    }

    /// The ranked trials on the first two objectives, with their fronts (a sweep with several
    /// objectives only).
    fn pareto_svg(&self) -> Result<Option<String>, String> {
        let [x, y, ..] = self.sweep.objectives.as_slice() else {
            return Ok(None);
        };
        let points: Vec<plots::FrontPoint> = self
            .data
            .leaderboard
            .trials
            .iter()
            .filter(|t| t.rank > 0)
            .filter_map(|t| {
                Some(plots::FrontPoint {
                    x: *t.metrics.get(&x.name)?,
                    y: *t.metrics.get(&y.name)?,
                    front: t.front,
                    trial: t.trial,
                })
            })
            .collect();
        plots::svg((1000, 620), |root| {
            plots::pareto(
                root,
                (&x.name, x.goal == "maximize"),
                (&y.name, y.goal == "maximize"),
                &points,
            )
        })
        .map(Some)
    }

    fn parallel_svg(&self) -> Result<String, String> {
        plots::svg((1200, 520), |root| {
            plots::parallel(root, &self.metric, self.maximize, &self.rows)
        })
    }

    fn importance_json(&self) -> String {
        let imps = importance::importances(&self.rows);
        let ranked = (self.sweep.ranked as usize).max(self.rows.len());
        serde_json::to_string_pretty(&importance::to_json(
            &self.metric,
            self.rows.len(),
            ranked,
            &imps,
        ))
        .unwrap_or_default()
    }

    fn importance_svg(&self) -> Result<String, String> {
        let imps = importance::importances(&self.rows);
        plots::svg((900, plots::importance_height(imps.len())), |root| {
            plots::importance(root, &self.metric, &imps)
        })
    }
}

fn fmt_time(unix: f64) -> String {
    if unix <= 0.0 {
        return "—".into();
    }
    crate::clock::utc(unix as i64)
}

fn html(data: &ReportData, figures: &[(&str, Option<&str>)]) -> String {
    let lb = &data.leaderboard;
    let s = lb.sweep.clone().unwrap_or_default();
    let title = if s.name.is_empty() {
        format!("sweep {}", s.id)
    } else {
        format!("{} ({})", s.name, s.id)
    };
    let config: Value = serde_json::from_str(&s.config_json).unwrap_or(Value::Null);
    let busy: f64 = lb.trials.iter().map(|t| t.duration_seconds).sum();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>
body {{ font-family: "DejaVu Sans", Verdana, sans-serif; margin: 2em auto; max-width: 1240px; color: #222; }}
h1 {{ font-size: 1.6em; }} h2 {{ font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ddd; padding: 3px 7px; text-align: left; }}
th {{ background: #f4f4f4; }} tr.best td {{ background: #eef7ee; font-weight: bold; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.facts td:first-child {{ color: #666; }}
pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; }}
figure {{ margin: 1em 0; }} svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{t}</h1>
<table class="facts">
<tr><td>method</td><td>{method}</td></tr>
<tr><td>metric</td><td>{metric} ({goal})</td></tr>
<tr><td>state</td><td>{state}</td></tr>
<tr><td>trials</td><td>{fin} finished, {stp} stopped early, {fail} failed, {run} running, {q} queued</td></tr>
<tr><td>best</td><td>{best}</td></tr>
<tr><td>created</td><td>{created}</td></tr>
<tr><td>last change</td><td>{updated}</td></tr>
<tr><td>wall time</td><td>{wall:.1} s</td></tr>
<tr><td>training time (all trials)</td><td>{busy:.1} s</td></tr>
</table>
"#,
        t = esc(&title),
        method = esc(&s.method),
        metric = esc(&s.metric),
        goal = esc(&s.goal),
        state = export::state_name(s.state),
        fin = s.finished,
        stp = s.stopped,
        fail = s.failed,
        run = s.running,
        q = s.queued,
        best = s.best.map_or("—".into(), |b| format!(
            "{b:.4} (trial {})",
            s.best_trial.unwrap_or(0)
        )),
        created = fmt_time(s.created_at),
        updated = fmt_time(s.updated_at),
        wall = (s.updated_at - s.created_at).max(0.0),
    );
    for (caption, svg) in figures {
        if let Some(svg) = svg {
            let _ = write!(
                h,
                "<h2>{}</h2>\n<figure>{}</figure>\n",
                esc(caption),
                inline_svg(svg)
            );
        }
    }
    if let Some(best) = data.top.first().and_then(|t| t.summary.as_ref()) {
        h.push_str(&media::section(best.trial, &data.media));
    }
    // Leaderboard: every trial.
    let names: Vec<String> = {
        let mut set = std::collections::BTreeSet::new();
        for t in &lb.trials {
            set.extend(params_of(t).into_keys());
        }
        set.into_iter().collect()
    };
    // Besides the metric, the keys the trials logged (their final values), as the dashboard
    // shows them: the built-in trainer's test_accuracy and epochs, a program's own keys.
    let logged = logged_keys(lb, &s.metric, &names);
    let named = lb.trials.iter().any(|t| !t.name.is_empty());
    let multi = !s.objectives.is_empty();
    let _ = write!(
        h,
        "<h2>Leaderboard</h2>\n{}<div style=\"overflow-x: auto\"><table class=\"leaderboard\">\n<tr><th>rank</th>{}<th>trial</th>{}<th>state</th><th>{}</th>",
        if multi {
            format!(
                "<p>Ranked by Pareto front (1: no other trial is as good on every objective and better on one), then by crowding distance within the front: {}.</p>\n",
                esc(&s.objectives.iter().map(|o| format!("{} ({})", o.name, o.goal)).collect::<Vec<_>>().join(", "))
            )
        } else {
            String::new()
        },
        if multi { "<th>front</th>" } else { "" },
        if named { "<th>name</th>" } else { "" },
        esc(&s.metric)
    );
    for k in logged
        .iter()
        .chain(["seconds".to_string()].iter())
        .chain(&names)
    {
        let _ = write!(h, "<th>{}</th>", esc(k));
    }
    h.push_str("</tr>\n");
    for t in &lb.trials {
        let p = params_of(t);
        let num = |k: &str| {
            t.metrics.get(k).map_or("—".to_string(), |v| {
                if v.fract() == 0.0 && v.abs() < 1e15 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.4}")
                }
            })
        };
        let _ = write!(
            h,
            "<tr{}><td class=\"num\">{}</td>{}<td class=\"num\">{}</td>{}<td>{}</td><td class=\"num\">{}</td>",
            if t.rank == 1 || (multi && t.front == 1) { " class=\"best\"" } else { "" },
            if t.rank > 0 { t.rank.to_string() } else { "—".into() },
            if multi {
                format!("<td class=\"num\">{}</td>", if t.front > 0 { t.front.to_string() } else { "—".into() })
            } else {
                String::new()
            },
            t.trial,
            if named { format!("<td>{}</td>", esc(&t.name)) } else { String::new() },
            esc(&t.state),
            num(&s.metric),
        );
        for k in &logged {
            let _ = write!(h, "<td class=\"num\">{}</td>", num(k));
        }
        let _ = write!(h, "<td class=\"num\">{:.1}</td>", t.duration_seconds);
        for n in &names {
            let v = p.get(n).map_or(String::new(), |v| match v {
                Value::String(x) => x.clone(),
                other => other.to_string(),
            });
            let _ = write!(h, "<td>{}</td>", esc(&v));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n");
    let _ = write!(
        h,
        "<h2>Sweep config</h2>\n<pre>{}</pre>\n<p>Written by <code>coordinator report</code>. The importance figures are in importance.json.</p>\n</body></html>\n",
        esc(&serde_json::to_string_pretty(&config).unwrap_or_default())
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(fmt_time(0.5), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_time(1_795_568_358.0), "2026-11-25 00:59:18 UTC");
        assert_eq!(fmt_time(951_782_400.0), "2000-02-29 00:00:00 UTC");
    }
}
