//! `worker evaluate` and `worker predict`: a saved model (`worker train --save-model`, or one
//! downloaded from a coordinator) on a data set's test images, or on images of one's own.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::CliError;
use crate::data::{self, DatasetSpec};
use crate::model::{self, Model};
use crate::nn::Loss;

/// Options of `worker evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The model's directory (model.json and model.safetensors)
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// mnist, fashion_mnist, or a directory with the four IDX files [default: the one the
    /// model was trained on]
    #[arg(long, value_name = "NAME|PATH")]
    pub dataset: Option<String>,
    /// Directory holding mnist/ and fashion-mnist/ [default: the repository's data/]
    #[arg(
        long,
        alias = "data_dir",
        env = "SWEEP_DATA_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object (test_loss, test_accuracy, confusion_matrix, labels) and nothing
    /// else
    #[arg(long)]
    pub json: bool,
}

/// Options of `worker predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model's directory (model.json and model.safetensors)
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Images: IDX image files (gzipped or not; every image in them) or PNGs (grey or colour,
    /// turned grey), each of the size the model takes
    #[arg(required = true, value_name = "IMAGES")]
    pub images: Vec<PathBuf>,
    /// Classes shown per image, most probable first
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub top: u16,
    /// Print one JSON object per image (file, index, class, probabilities of every class)
    #[arg(long)]
    pub json: bool,
}

/// Loads a model, warning when its weights are not all finite.
fn load(dir: &Path) -> Result<Model, CliError> {
    let m = model::load(dir).map_err(|e| CliError::Data(e.to_string()))?;
    if m.non_finite > 0 {
        eprintln!(
            "warning: {}: {} of its weights are NaN or infinite (the training diverged, or the file was altered); its predictions mean nothing",
            dir.join(&m.card.weights.file).display(),
            m.non_finite
        );
    }
    Ok(m)
}

/// Runs `worker evaluate`.
pub fn evaluate(a: &EvaluateArgs) -> Result<(), CliError> {
    let m = load(&a.model)?;
    let name = a.dataset.as_deref().unwrap_or(&m.card.dataset.name);
    let spec: DatasetSpec = name
        .parse()
        .map_err(|e| CliError::Usage(format!("--dataset: {e}")))?;
    let dir = a.data_dir.clone().unwrap_or_else(data::default_data_dir);
    let ds = data::load(&spec, &dir).map_err(|e| CliError::Data(e.to_string()))?;
    if ds.features != m.features() || ds.classes.len() != m.card.classes.len() {
        return Err(CliError::Usage(format!(
            "--dataset {name}: images of {} pixels in {} classes, but the model takes {} pixels and has {} classes",
            ds.features,
            ds.classes.len(),
            m.features(),
            m.card.classes.len()
        )));
    }
    let loss: Loss = m
        .card
        .loss
        .parse()
        .map_err(|e| CliError::Data(format!("{}: loss: {e}", a.model.display())))?;
    let f = ds.features;
    let k = ds.classes.len();
    let ev = crate::train::evaluate(&m.net, loss, &ds.test.images, &ds.test.labels, None, f, k);
    let same_data = ds.sha256() == m.card.dataset.sha256;
    if a.json {
        let v = json!({
            "test_loss": ev.loss,
            "test_accuracy": ev.accuracy,
            "confusion_matrix": ev.confusion,
            "labels": m.card.classes,
            "dataset": ds.name,
            "trained_on_this_dataset": same_data,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} ({} MLP) on {}: {} test images",
        a.model.display(),
        m.card
            .architecture
            .sizes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("-"),
        ds.name,
        ds.test.len()
    );
    if !same_data {
        println!(
            "note: not the data the model was trained on ({}, SHA-256 {})",
            m.card.dataset.name, m.card.dataset.sha256
        );
    }
    println!("test_loss {:.4}  test_accuracy {:.4}", ev.loss, ev.accuracy);
    if let Some(saved) = m.card.metrics.get("test_accuracy") {
        println!("(when saved: test_accuracy {saved:.4})");
    }
    println!();
    print!(
        "{}",
        sweep_trainer::confusion::format(&m.card.classes, &ev.confusion)
    );
    Ok(())
}

/// The mean of an image's outermost pixels (its background, in the built-in data sets: 0).
fn border_mean(img: &[u8], [h, w]: [usize; 2]) -> f64 {
    let (mut sum, mut n) = (0u64, 0u64);
    for y in 0..h {
        for x in 0..w {
            if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                sum += u64::from(img[y * w + x]);
                n += 1;
            }
        }
    }
    sum as f64 / n.max(1) as f64
}

/// The images of one file, as pixel bytes (`features` per image), or why not.
fn read_images(path: &Path, shape: [usize; 2]) -> Result<Vec<u8>, CliError> {
    let [h, w] = shape;
    let is_png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if is_png {
        let img = image::open(path)
            .map_err(|e| CliError::Data(format!("{}: not a readable PNG: {e}", path.display())))?
            .to_luma8();
        if (img.height() as usize, img.width() as usize) != (h, w) {
            return Err(CliError::Data(format!(
                "{}: {}×{} pixels; the model takes {h}×{w} (height×width)",
                path.display(),
                img.height(),
                img.width()
            )));
        }
        return Ok(img.into_raw());
    }
    let a = data::idx::read_idx_file(path).map_err(|e| CliError::Data(e.to_string()))?;
    let fits = match a.dims.as_slice() {
        [_, rows, cols] | [rows, cols] => (*rows, *cols) == (h, w),
        _ => false,
    };
    if !fits {
        return Err(CliError::Data(format!(
            "{}: IDX dimensions {:?}; the model takes images of {h}×{w} ([N, {h}, {w}] or [{h}, {w}])",
            path.display(),
            a.dims
        )));
    }
    Ok(a.data)
}

/// Runs `worker predict`.
pub fn predict(a: &PredictArgs) -> Result<(), CliError> {
    let m = load(&a.model)?;
    let f = m.features();
    let classes = &m.card.classes;
    let k = classes.len();
    // The built-in data sets are light-on-dark: an image the other way round is predicted
    // with confidence and means nothing.
    let dark_trained = matches!(
        m.card.dataset.name.parse::<DatasetSpec>(),
        Ok(DatasetSpec::Mnist | DatasetSpec::FashionMnist)
    );
    for path in &a.images {
        let pixels = read_images(path, m.card.input.shape)?;
        if dark_trained {
            let light = pixels
                .chunks_exact(f)
                .filter(|img| border_mean(img, m.card.input.shape) > 127.0)
                .count();
            if light > 0 {
                eprintln!(
                    "warning: {}: {light} of {} images have a light background; {} was trained on light-on-dark images, so invert them first (e.g. `convert IMG -negate OUT.png`) or the predictions mean nothing",
                    sweep_trainer::text::terminal_safe(&path.display().to_string()),
                    pixels.len() / f,
                    m.card.dataset.name
                );
            }
        }
        let probs = m.probabilities(&pixels);
        let many = pixels.len() > f;
        for (i, p) in probs.chunks_exact(k).enumerate() {
            let mut order: Vec<usize> = (0..k).collect();
            // Most probable first; ties keep class order.
            order.sort_by(|&x, &y| p[y].total_cmp(&p[x]));
            let best = order[0];
            if a.json {
                let v = json!({
                    "file": path.display().to_string(),
                    "index": i,
                    "class": classes[best],
                    "label": best,
                    // Each probability in its shortest f32 spelling.
                    "probabilities": p.iter().map(|x| x.to_string().parse::<f64>().unwrap_or(f64::NAN)).collect::<Vec<_>>(),
                });
                println!("{v}");
                continue;
            }
            let name = if many {
                format!("{}[{i}]", path.display())
            } else {
                path.display().to_string()
            };
            let name = sweep_trainer::text::terminal_safe(&name);
            let shown: Vec<String> = order
                .iter()
                .take(usize::from(a.top))
                .map(|&c| {
                    format!(
                        "{} {:.3}",
                        sweep_trainer::text::terminal_safe(&classes[c]),
                        p[c]
                    )
                })
                .collect();
            println!("{name}: {}", shown.join(", "));
        }
    }
    Ok(())
}
