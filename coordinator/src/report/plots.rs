//! The report's figures, drawn with plotters on any backend (SVG strings, PNG files): the
//! confusion-matrix heatmap, learning curves, parallel coordinates, parameter importance and
//! the Pareto front of a sweep with several objectives.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use serde_json::Value;

use super::importance::Importance;

type Area<'a, DB> = DrawingArea<DB, Shift>;
type Res = Result<(), String>;

fn e<E: std::error::Error + Send + Sync>(err: DrawingAreaErrorKind<E>) -> String {
    err.to_string()
}

/// Draws with `f` into an SVG document of `size` and returns it.
pub fn svg(
    size: (u32, u32),
    f: impl FnOnce(&Area<'_, SVGBackend<'_>>) -> Res,
) -> Result<String, String> {
    worker::plot::ensure_font();
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, size).into_drawing_area();
        f(&root)?;
        root.present().map_err(e)?;
    }
    Ok(s)
}

/// Draws with `f` into a PNG image of `size` and returns its bytes.
pub fn png(
    size: (u32, u32),
    f: impl FnOnce(&Area<'_, BitMapBackend<'_>>) -> Res,
) -> Result<Vec<u8>, String> {
    use image::ImageEncoder as _;
    worker::plot::ensure_font();
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        f(&root)?;
        root.present().map_err(e)?;
    }
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&rgb, size.0, size.1, image::ColorType::Rgb8)
        .map_err(|err| format!("PNG encoding: {err}"))?;
    Ok(out)
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Size of the confusion figure for `k` classes.
pub fn confusion_size(k: usize) -> (u32, u32) {
    let cell = confusion_cell(k) as u32;
    (230 + cell * k as u32 + 110, 110 + cell * k as u32 + 150)
}

/// A cell's side in pixels: 58 for up to 40 classes, smaller above so the picture stays
/// about 2,300 pixels square at most (256 classes, the most a trial may report).
fn confusion_cell(k: usize) -> i32 {
    (2320 / k.max(1) as i32).clamp(8, 58)
}

/// A label as drawn: at most 24 characters.
fn short(label: &str) -> String {
    if label.chars().count() <= 24 {
        return label.to_string();
    }
    let mut s: String = label.chars().take(23).collect();
    s.push('…');
    s
}

/// A heatmap of a confusion matrix: true class down, predicted across, counts in the cells,
/// per-class accuracy (recall) on the right.
pub fn confusion<DB: DrawingBackend>(
    root: &Area<'_, DB>,
    title: &str,
    labels: &[String],
    counts: &[u64],
) -> Res
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(e)?;
    let k = labels.len();
    if k > crate::engine::MAX_CLASSES {
        return Err(format!(
            "confusion matrix of {k} classes: at most {} are drawn",
            crate::engine::MAX_CLASSES
        ));
    }
    if k == 0 || counts.len() != k * k {
        return Err(format!(
            "confusion matrix of {} counts for {k} classes",
            counts.len()
        ));
    }
    let cell = confusion_cell(k);
    // Counts are written in the cells while they fit.
    let numbers = cell >= 40;
    let (x0, y0) = (230i32, 110i32);
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let font = |s: u32| ("sans-serif", s).into_font();
    root.draw(&Text::new(
        title.to_string(),
        (20, 18),
        font(20).color(&BLACK),
    ))
    .map_err(e)?;
    root.draw(&Text::new(
        "predicted class →".to_string(),
        (x0 + cell * k as i32 / 2 - 60, y0 + cell * k as i32 + 110),
        font(15).color(&BLACK),
    ))
    .map_err(e)?;
    root.draw(&Text::new(
        "true class ↓".to_string(),
        (20, y0 - 30),
        font(15).color(&BLACK),
    ))
    .map_err(e)?;
    root.draw(&Text::new(
        "accuracy".to_string(),
        (x0 + cell * k as i32 + 14, y0 - 30),
        font(15).color(&BLACK),
    ))
    .map_err(e)?;
    for (r, label) in labels.iter().enumerate() {
        let y = y0 + cell * r as i32;
        let row: u64 = counts[r * k..(r + 1) * k].iter().sum();
        root.draw(&Text::new(
            short(label),
            (20, y + cell / 2 - 8),
            font(14.min(cell as u32)).color(&BLACK),
        ))
        .map_err(e)?;
        let acc = if row > 0 {
            counts[r * k + r] as f64 / row as f64 * 100.0
        } else {
            0.0
        };
        root.draw(&Text::new(
            format!("{acc:.1}%"),
            (x0 + cell * k as i32 + 14, y + cell / 2 - 8),
            font(14.min(cell as u32)).color(&BLACK),
        ))
        .map_err(e)?;
        for c in 0..k {
            let v = counts[r * k + c];
            let t = (v as f64 / max).sqrt();
            let fill = ViridisRGB::get_color_normalized(t, 0.0, 1.0);
            let x = x0 + cell * c as i32;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                fill.filled(),
            ))
            .map_err(e)?;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                WHITE.stroke_width(1),
            ))
            .map_err(e)?;
            if !numbers {
                continue;
            }
            let ink = if t > 0.6 { BLACK } else { WHITE };
            let txt = v.to_string();
            let w = 7 * txt.len() as i32;
            root.draw(&Text::new(
                txt,
                (x + cell / 2 - w / 2, y + cell / 2 - 7),
                font(13).color(&ink),
            ))
            .map_err(e)?;
        }
    }
    // Column labels, rotated.
    for (c, label) in labels.iter().enumerate() {
        let x = x0 + cell * c as i32 + cell / 2 - 6;
        root.draw(&Text::new(
            short(label),
            (x, y0 + cell * k as i32 + 8),
            font(13.min(cell as u32))
                .transform(FontTransform::Rotate90)
                .color(&BLACK),
        ))
        .map_err(e)?;
    }
    Ok(())
}

/// One trial's curve of one metric.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// (epoch, value) points.
    pub points: Vec<(f64, f64)>,
}

/// Height of the curves figure: 440 px of charts and a legend row per two trials.
pub fn curves_height(trials: usize) -> u32 {
    440 + 24 * trials.div_ceil(2) as u32 + 16
}

/// Learning curves: one panel per metric (side by side), one line per trial, one legend for all
/// panels below them (the trials and colours are the same in every panel).
pub fn curves<DB: DrawingBackend>(root: &Area<'_, DB>, panels: &[(String, Vec<Curve>)]) -> Res
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(e)?;
    let (_, h) = root.dim_in_pixel();
    let (charts, legend) = root.split_vertically(440.min(h));
    let areas = charts.split_evenly((1, panels.len().max(1)));
    for (area, (metric, cs)) in areas.iter().zip(panels) {
        let pts = cs.iter().flat_map(|c| c.points.iter());
        let (mut xmax, mut ylo, mut yhi) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in pts {
            if y.is_finite() {
                xmax = xmax.max(x);
                ylo = ylo.min(y);
                yhi = yhi.max(y);
            }
        }
        if !ylo.is_finite() {
            (ylo, yhi) = (0.0, 1.0);
        }
        let pad = ((yhi - ylo) * 0.05).max(1e-6);
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{metric} per epoch"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1.0..xmax.max(2.0), (ylo - pad)..(yhi + pad))
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(metric.as_str())
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        for (i, c) in cs.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().copied().filter(|p| p.1.is_finite()),
                    color.stroke_width(2),
                ))
                .map_err(e)?;
            chart
                .draw_series(
                    c.points
                        .iter()
                        .filter(|p| p.1.is_finite())
                        .map(|&p| Circle::new(p, 3, color.filled())),
                )
                .map_err(e)?;
        }
    }
    // The shared legend, two columns.
    if let Some((_, cs)) = panels.first() {
        let (w, _) = legend.dim_in_pixel();
        let col_w = (w as i32 - 80) / 2;
        for (i, c) in cs.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let x = 70 + (i as i32 % 2) * col_w;
            let y = 8 + (i as i32 / 2) * 24;
            legend
                .draw(&PathElement::new(
                    vec![(x, y + 8), (x + 24, y + 8)],
                    color.stroke_width(3),
                ))
                .map_err(e)?;
            legend
                .draw(&Text::new(
                    c.label.clone(),
                    (x + 32, y),
                    ("sans-serif", 13).into_font().color(&BLACK),
                ))
                .map_err(e)?;
        }
    }
    Ok(())
}

/// One trial in the Pareto figure: its values of the two objectives drawn, its front (1 is
/// the non-dominated set) and its number.
#[derive(Debug, Clone, Copy)]
pub struct FrontPoint {
    /// The first objective.
    pub x: f64,
    /// The second objective.
    pub y: f64,
    /// Its Pareto front, 1-based.
    pub front: u32,
    /// The trial.
    pub trial: u64,
}

/// The trials of a sweep with several objectives on its first two: the Pareto front drawn as
/// the staircase it is (each objective's better direction said on its axis), its trials
/// labelled, the others in grey.
pub fn pareto<DB: DrawingBackend>(
    root: &Area<'_, DB>,
    (x_name, x_max): (&str, bool),
    (y_name, y_max): (&str, bool),
    points: &[FrontPoint],
) -> Res
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(e)?;
    let finite: Vec<&FrontPoint> = points
        .iter()
        .filter(|p| p.x.is_finite() && p.y.is_finite())
        .collect();
    let range = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.06).max(hi.abs().max(1e-9) * 1e-3);
        (lo - pad, hi + pad)
    };
    let (x0, x1) = range(&mut finite.iter().map(|p| p.x));
    let (y0, y1) = range(&mut finite.iter().map(|p| p.y));
    let better = |max: bool| {
        if max {
            "higher is better"
        } else {
            "lower is better"
        }
    };
    let on_front = finite.iter().filter(|p| p.front == 1).count();
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Pareto front: {on_front} of {} trials no other beats on both",
                finite.len()
            ),
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(46)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(format!("{x_name} ({})", better(x_max)))
        .y_desc(format!("{y_name} ({})", better(y_max)))
        .x_label_formatter(&|v| fmt_num(*v))
        .y_label_formatter(&|v| fmt_num(*v))
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(
            finite
                .iter()
                .filter(|p| p.front != 1)
                .map(|p| Circle::new((p.x, p.y), 3, grey.mix(0.7).filled())),
        )
        .map_err(e)?;
    // The front as a staircase from its best point on x to its best on y: between two
    // neighbours, what either reaches is attainable.
    let mut front: Vec<(f64, f64, u64)> = finite
        .iter()
        .filter(|p| p.front == 1)
        .map(|p| (p.x, p.y, p.trial))
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut stairs = Vec::new();
    for (i, &(x, y, _)) in front.iter().enumerate() {
        if let Some(&(px, py, _)) = i.checked_sub(1).and_then(|j| front.get(j)) {
            // The corner of what the two dominate together: it lies on the worse side in x.
            stairs.push(if x_max { (px, y) } else { (x, py) });
        }
        stairs.push((x, y));
    }
    let accent = PALETTE[3];
    chart
        .draw_series(LineSeries::new(stairs, accent.stroke_width(2)))
        .map_err(e)?;
    chart
        .draw_series(
            front
                .iter()
                .map(|&(x, y, _)| Circle::new((x, y), 5, accent.filled())),
        )
        .map_err(e)?;
    // Labels for the front's trials (at most 30, evenly spaced).
    let step = front.len().div_ceil(30).max(1);
    chart
        .draw_series(front.iter().step_by(step).map(|&(x, y, n)| {
            Text::new(
                format!("{n}"),
                (x, y),
                ("sans-serif", 12).into_font().color(&BLACK),
            )
        }))
        .map_err(e)?;
    Ok(())
}

/// One axis of the parallel-coordinates view.
#[derive(Debug, Clone)]
enum Axis {
    Num {
        lo: f64,
        hi: f64,
        log: bool,
        /// The distinct values, when few enough to label each.
        few: Option<Vec<f64>>,
    },
    Cat(Vec<String>),
}

fn axis_of(values: &[&Value]) -> Axis {
    let nums: Option<Vec<f64>> = values.iter().map(|v| v.as_f64()).collect();
    match nums {
        Some(xs) if !xs.is_empty() => {
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log = lo > 0.0 && hi / lo > 100.0;
            let mut d = xs.clone();
            d.sort_by(f64::total_cmp);
            d.dedup();
            let few = (d.len() <= 8).then_some(d);
            Axis::Num { lo, hi, log, few }
        }
        _ => {
            let mut cats: Vec<String> = values.iter().map(|v| show(v)).collect();
            cats.sort();
            cats.dedup();
            Axis::Cat(cats)
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn fmt_num(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) {
        format!("{x:.1e}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl Axis {
    /// Position in [0, 1] (0 at the bottom).
    fn pos(&self, v: &Value) -> Option<f64> {
        match self {
            Axis::Num { lo, hi, log, .. } => {
                let x = v.as_f64()?;
                let (a, b, x) = if *log {
                    (lo.ln(), hi.ln(), x.ln())
                } else {
                    (*lo, *hi, x)
                };
                Some(if b > a { (x - a) / (b - a) } else { 0.5 })
            }
            Axis::Cat(c) => {
                let i = c.iter().position(|s| *s == show(v))?;
                Some(if c.len() > 1 {
                    i as f64 / (c.len() - 1) as f64
                } else {
                    0.5
                })
            }
        }
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        match self {
            Axis::Num { lo, hi, .. } if lo == hi => vec![(0.5, fmt_num(*lo))],
            Axis::Num { few: Some(d), .. } => d
                .iter()
                .filter_map(|&x| Some((self.pos(&Value::from(x))?, fmt_num(x))))
                .collect(),
            Axis::Num { lo, hi, .. } => vec![(0.0, fmt_num(*lo)), (1.0, fmt_num(*hi))],
            Axis::Cat(c) => c
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let p = if c.len() > 1 {
                        i as f64 / (c.len() - 1) as f64
                    } else {
                        0.5
                    };
                    (p, s.clone())
                })
                .collect(),
        }
    }
}

/// Parallel coordinates: one vertical axis per parameter and one for the metric, one line per
/// trial coloured by its metric (viridis, bright = better), the best trial drawn last and bold.
pub fn parallel<DB: DrawingBackend>(
    root: &Area<'_, DB>,
    metric: &str,
    maximize: bool,
    rows: &[(BTreeMap<String, Value>, f64)],
) -> Res
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(e)?;
    let (w, h) = root.dim_in_pixel();
    let names: Vec<String> = {
        let mut s: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for r in rows {
            s.extend(r.0.keys().cloned());
        }
        s.into_iter().collect()
    };
    let metric_vals: Vec<Value> = rows.iter().map(|r| Value::from(r.1)).collect();
    // Parameters that never change say nothing: no axis for them.
    let mut axes: Vec<(String, Axis)> = names
        .iter()
        .filter_map(|n| {
            let vs: Vec<&Value> = rows.iter().filter_map(|r| r.0.get(n)).collect();
            let varies = vs.iter().any(|v| *v != vs[0]);
            varies.then(|| (n.clone(), axis_of(&vs)))
        })
        .collect();
    axes.push((
        metric.to_string(),
        axis_of(&metric_vals.iter().collect::<Vec<_>>()),
    ));
    let font = |s: u32| ("sans-serif", s).into_font();
    root.draw(&Text::new(
        format!(
            "parameters → {metric} ({} trials; colour: {metric}, bright = better)",
            rows.len()
        ),
        (20, 14),
        font(17).color(&BLACK),
    ))
    .map_err(e)?;
    let (left, right, top, bottom) = (70i32, 90i32, 70i32, 50i32);
    let n_axes = axes.len().max(2);
    let step = (w as i32 - left - right) as f64 / (n_axes - 1) as f64;
    let ax_x = |i: usize| left + (step * i as f64) as i32;
    let ax_y = |p: f64| top + ((1.0 - p) * (h as i32 - top - bottom) as f64) as i32;
    let (mlo, mhi) = rows
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, hh), r| {
            (l.min(r.1), hh.max(r.1))
        });
    let goodness = |m: f64| {
        let t = if mhi > mlo {
            (m - mlo) / (mhi - mlo)
        } else {
            1.0
        };
        if maximize {
            t
        } else {
            1.0 - t
        }
    };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| goodness(rows[a].1).total_cmp(&goodness(rows[b].1)));
    for (rank, &i) in order.iter().enumerate() {
        let (params, m) = &rows[i];
        let pts: Vec<(i32, i32)> = axes
            .iter()
            .enumerate()
            .filter_map(|(k, (name, ax))| {
                let v = if k + 1 == axes.len() {
                    Value::from(*m)
                } else {
                    params.get(name)?.clone()
                };
                Some((ax_x(k), ax_y(ax.pos(&v)?)))
            })
            .collect();
        let color = ViridisRGB::get_color_normalized(goodness(*m), 0.0, 1.0);
        let best = rank + 1 == order.len();
        root.draw(&PathElement::new(
            pts,
            color
                .mix(if best { 1.0 } else { 0.75 })
                .stroke_width(if best { 4 } else { 2 }),
        ))
        .map_err(e)?;
    }
    for (k, (name, ax)) in axes.iter().enumerate() {
        let x = ax_x(k);
        root.draw(&PathElement::new(
            vec![(x, ax_y(0.0)), (x, ax_y(1.0))],
            BLACK.stroke_width(1),
        ))
        .map_err(e)?;
        let title_w = 7 * name.len() as i32;
        root.draw(&Text::new(
            name.clone(),
            (x - title_w / 2, top - 26),
            font(13).color(&BLACK),
        ))
        .map_err(e)?;
        for (p, label) in ax.ticks() {
            let y = ax_y(p);
            root.draw(&PathElement::new(
                vec![(x - 4, y), (x + 4, y)],
                BLACK.stroke_width(1),
            ))
            .map_err(e)?;
            root.draw(&Text::new(
                label,
                (x + 6, y - 6),
                font(11).color(&BLACK.mix(0.85)),
            ))
            .map_err(e)?;
        }
    }
    Ok(())
}

/// Horizontal bars of each parameter's importance, with its correlation written beside.
pub fn importance<DB: DrawingBackend>(root: &Area<'_, DB>, metric: &str, imps: &[Importance]) -> Res
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(e)?;
    let font = |s: u32| ("sans-serif", s).into_font();
    root.draw(&Text::new(
        format!("parameter importance for {metric} (share of variance explained)"),
        (20, 14),
        font(17).color(&BLACK),
    ))
    .map_err(e)?;
    let (w, _) = root.dim_in_pixel();
    let (x0, y0, bar_h) = (190i32, 56i32, 30i32);
    let span = (w as i32 - x0 - 170).max(50) as f64;
    root.draw(&Text::new(
        "importance".to_string(),
        (x0, y0 - 18),
        font(12).color(&BLACK.mix(0.7)),
    ))
    .map_err(e)?;
    root.draw(&Text::new(
        "correlation".to_string(),
        (x0 + span as i32 + 60, y0 - 18),
        font(12).color(&BLACK.mix(0.7)),
    ))
    .map_err(e)?;
    for (i, imp) in imps.iter().enumerate() {
        let y = y0 + i as i32 * (bar_h + 8);
        root.draw(&Text::new(
            imp.name.clone(),
            (20, y + 8),
            font(14).color(&BLACK),
        ))
        .map_err(e)?;
        let len = (imp.importance * span).round() as i32;
        root.draw(&Rectangle::new(
            [(x0, y), (x0 + len.max(1), y + bar_h)],
            PALETTE[0].filled(),
        ))
        .map_err(e)?;
        root.draw(&Text::new(
            format!("{:.1}%", imp.importance * 100.0),
            (x0 + len + 6, y + 8),
            font(12).color(&BLACK),
        ))
        .map_err(e)?;
        let corr = imp
            .correlation
            .map_or("—".to_string(), |c| format!("{c:+.2}"));
        let color = match imp.correlation {
            Some(c) if c > 0.0 => PALETTE[2],
            Some(_) => PALETTE[3],
            None => RGBColor(120, 120, 120),
        };
        root.draw(&Text::new(
            corr,
            (x0 + span as i32 + 60, y + 8),
            font(14).color(&color),
        ))
        .map_err(e)?;
    }
    Ok(())
}

/// Height of the importance figure for `n` parameters.
pub fn importance_height(n: usize) -> u32 {
    70 + 38 * n.max(1) as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_confusion_picture_stays_bounded_for_the_most_classes() {
        assert_eq!(
            super::confusion_size(10),
            (230 + 580 + 110, 110 + 580 + 150)
        );
        let (w, h) = super::confusion_size(crate::engine::MAX_CLASSES);
        assert!(w <= 2700 && h <= 2700, "{w}×{h}");
        assert_eq!(super::short(&"é".repeat(40)).chars().count(), 24);
    }
}
