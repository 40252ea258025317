//! Pictures: the bundled font (DejaVu Sans, `assets/fonts/`, so no system font is needed) and a
//! grid of one sample image per class (`worker samples`).

use std::path::Path;

use plotters::prelude::*;

use crate::data::Dataset;

/// DejaVu Sans, compiled into the binary (its licence is beside it in `assets/fonts/`).
pub static FONT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../assets/fonts/DejaVuSans.ttf"
));

/// Registers the bundled font as plotters' `sans-serif` (normal and bold), once per process.
pub fn ensure_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // The font is compiled in and known to parse; a failure leaves text unrendered
            // rather than stopping the program.
            let _ = plotters::style::register_font("sans-serif", style, FONT);
        }
    });
}

/// The first training image of each class.
pub fn first_of_each_class(ds: &Dataset) -> Vec<(usize, Option<usize>)> {
    (0..ds.classes.len())
        .map(|c| (c, ds.train.labels.iter().position(|&l| usize::from(l) == c)))
        .collect()
}

/// Draws one sample per class in a labelled grid (5 columns) and writes it as PNG or SVG (by
/// the file's extension). `scale` is the pixel size of one image pixel.
pub fn samples_picture(ds: &Dataset, out: &Path, scale: u32) -> Result<(), String> {
    ensure_font();
    let (h, w) = (ds.shape.0 as u32, ds.shape.1 as u32);
    let cols = 5u32;
    let n = ds.classes.len() as u32;
    let rows = n.div_ceil(cols).max(1);
    let (cell_w, cell_h) = (w * scale + 20, h * scale + 36);
    let size = (cols * cell_w + 20, rows * cell_h + 50);
    let svg = out
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let cell = (cell_w, cell_h);
    if svg {
        draw_samples(
            SVGBackend::new(out, size).into_drawing_area(),
            ds,
            scale,
            cols,
            cell,
        )
    } else {
        draw_samples(
            BitMapBackend::new(out, size).into_drawing_area(),
            ds,
            scale,
            cols,
            cell,
        )
    }
}

fn draw_samples<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    ds: &Dataset,
    scale: u32,
    cols: u32,
    (cell_w, cell_h): (u32, u32),
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    root.draw(&Text::new(
        format!("{}: one training image per class", ds.name),
        (10, 12),
        ("sans-serif", 18).into_font().color(&BLACK),
    ))
    .map_err(err)?;
    let (h, w) = ds.shape;
    for (c, idx) in first_of_each_class(ds) {
        let (col, row) = (c as u32 % cols, c as u32 / cols);
        let x0 = 10 + col * cell_w;
        let y0 = 44 + row * cell_h;
        root.draw(&Text::new(
            ds.classes[c].clone(),
            (x0 as i32, y0 as i32),
            ("sans-serif", 14).into_font().color(&BLACK),
        ))
        .map_err(err)?;
        let Some(i) = idx else { continue };
        let img = &ds.train.images[i * ds.features..(i + 1) * ds.features];
        for (p, &v) in img.iter().enumerate() {
            let (py, px) = ((p / w) as u32, (p % w) as u32);
            if py as usize >= h {
                break;
            }
            // Ink dark on white, as the digits and clothes are usually shown.
            let g = 255 - v;
            let x = (x0 + px * scale) as i32;
            let y = (y0 + 20 + py * scale) as i32;
            root.draw(&Rectangle::new(
                [(x, y), (x + scale as i32, y + scale as i32)],
                RGBColor(g, g, g).filled(),
            ))
            .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}
