//! `sweep-bench train`: training speed of the reference MLP (784-128-128-128-10, ReLU, Adam,
//! cross-entropy, Fashion-MNIST's 54,000 training images), beside PyTorch's and NumPy's on the
//! same model in the same run when they are installed.
//!
//! Figures are medians over epochs; "s/epoch" is training time only (no validation), the same
//! quantity the reference script times.

use anyhow::{anyhow, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Args;
use serde_json::{json, Value};

use worker::data::{self, DatasetSpec};
use worker::nn::kernels;
use worker::train::{self, TrainConfig, TrialOptions};

/// Measure seconds per epoch and samples/s of the reference MLP, on one thread and as two
/// concurrent trials, with PyTorch and NumPy beside it when `python3` can import them.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Batch sizes to measure on one thread
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    pub(crate) batch_sizes: Vec<usize>,
    /// Epochs per measurement (the median is reported)
    #[arg(long, default_value_t = 3)]
    pub(crate) epochs: usize,
    /// Batch size of the two-concurrent-trials measurement
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrent_batch_size: usize,
    /// Skip the PyTorch and NumPy runs
    #[arg(long)]
    pub(crate) no_reference: bool,
    /// Directory holding fashion-mnist/ [default: the repository's data/]
    #[arg(long, env = "SWEEP_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print one JSON object instead of a table
    #[arg(long)]
    pub(crate) json: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Training FLOPs per image of an MLP with these widths: forward `2·in·out` per layer, weight
/// gradient `2·in·out`, input gradient `2·in·out` for every layer but the first.
pub(crate) fn train_flops_per_image(sizes: &[usize]) -> f64 {
    sizes
        .windows(2)
        .enumerate()
        .map(|(l, w)| {
            let mac = (w[0] * w[1]) as f64;
            if l == 0 {
                4.0 * mac
            } else {
                6.0 * mac
            }
        })
        .sum()
}

/// Single-thread f32 GEMM throughput of the `gemm` crate on square matrices, GFLOP/s.
pub(crate) fn gemm_peak_gflops(n: usize, reps: usize) -> f64 {
    let a =
        ndarray::Array2::<f32>::from_shape_fn((n, n), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1);
    let b = a.t().to_owned();
    let mut c = ndarray::Array2::<f32>::zeros((n, n));
    kernels::matmul(c.view_mut(), a.view(), b.view(), false);
    let times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            kernels::matmul(c.view_mut(), a.view(), b.view(), false);
            t.elapsed().as_secs_f64()
        })
        .collect();
    2.0 * (n as f64).powi(3) / median(times) / 1e9
}

struct Measured {
    seconds_per_epoch: f64,
    samples_per_second: f64,
    test_accuracy: f64,
}

fn measure(cfg: &TrainConfig, ds: &data::Dataset) -> Result<Measured> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| anyhow!(e.to_string()))?;
    let r = pool
        .install(|| train::run_trial(cfg, ds, &TrialOptions::default(), &mut train::NoObserver))
        .map_err(|e| anyhow!(e.to_string()))?;
    let sps = median(r.epochs.iter().map(|e| e.samples_per_second).collect());
    Ok(Measured {
        seconds_per_epoch: r.train_samples as f64 / sps,
        samples_per_second: sps,
        test_accuracy: r.test.map_or(f64::NAN, |t| t.accuracy),
    })
}

fn reference(
    framework: &str,
    batch: usize,
    threads: usize,
    epochs: usize,
    data_dir: &Path,
) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/reference_mlp.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--framework", framework, "--data-dir"])
        .arg(data_dir)
        .args([
            "--batch-size",
            &batch.to_string(),
            "--threads",
            &threads.to_string(),
            "--epochs",
            &epochs.to_string(),
        ])
        // These pin old OpenBLAS builds to a slower kernel on some machines; the reference
        // should run at its best.
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .output()
        .ok()?;
    if !out.status.success() {
        tracing::warn!(framework, stderr = %String::from_utf8_lossy(&out.stderr), "reference run failed");
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.lines().last()?).ok()
}

fn importable(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn peak_rss_of_train(data_dir: &Path) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .args(["train", "--json", "--epochs", "1", "--data-dir"])
        .arg(data_dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last: Value = serde_json::from_str(text.lines().last()?).ok()?;
    last["peak_rss_bytes"].as_u64()
}

/// Runs `sweep-bench train`.
pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    if args.epochs == 0 || args.batch_sizes.contains(&0) || args.concurrent_batch_size == 0 {
        return Err(anyhow!(
            "--epochs, --batch-sizes and --concurrent-batch-size must be ≥ 1",
        ));
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(data::default_data_dir);
    let ds =
        data::load(&DatasetSpec::FashionMnist, &data_dir).map_err(|e| anyhow!(e.to_string()))?;
    let base = TrainConfig {
        epochs: args.epochs,
        ..TrainConfig::default()
    };
    let sizes = [ds.features, 128, 128, 128, ds.classes.len()];
    let flops = train_flops_per_image(&sizes);
    let say = |s: String| {
        if !args.json {
            println!("{s}");
        }
    };
    say(format!(
        "reference MLP {} (relu, adam, cross-entropy), fashion_mnist, median of {} epochs; {:.3} MFLOP per image per step",
        sizes.map(|s| s.to_string()).join("-"),
        args.epochs,
        flops / 1e6
    ));
    let peak = gemm_peak_gflops(1024, 7);
    say(format!(
        "single-thread GEMM peak (gemm crate, f32 1024³): {peak:.1} GFLOP/s"
    ));
    let torch = !args.no_reference && importable("torch");
    let numpy = !args.no_reference && importable("numpy");
    if !args.no_reference && !torch {
        say(
            "PyTorch not importable by python3: no PyTorch figures (pip install torch to add them)"
                .into(),
        );
    }
    say(String::new());
    say(format!(
        "{:<22} {:>8} {:>11} {:>8} {:>6} {:>9} {:>14} {:>9}",
        "run", "s/epoch", "samples/s", "GFLOP/s", "%peak", "test acc", "torch s/epoch", "speedup"
    ));
    let mut rows = Vec::new();
    let mut single64 = None;
    for &b in &args.batch_sizes {
        let cfg = TrainConfig {
            batch_size: b,
            ..base.clone()
        };
        let m = measure(&cfg, &ds)?;
        let gf = flops * m.samples_per_second / 1e9;
        let t = if torch {
            reference("torch", b, 1, args.epochs, &data_dir)
        } else {
            None
        };
        let ts = t.as_ref().and_then(|t| t["median_epoch_seconds"].as_f64());
        say(format!(
            "{:<22} {:>8.3} {:>11.0} {:>8.1} {:>5.0}% {:>9.4} {:>14} {:>9}",
            format!("batch {b}, 1 thread"),
            m.seconds_per_epoch,
            m.samples_per_second,
            gf,
            100.0 * gf / peak,
            m.test_accuracy,
            ts.map_or("-".into(), |s| format!("{s:.3}")),
            ts.map_or("-".into(), |s| format!("{:.2}×", s / m.seconds_per_epoch)),
        ));
        if b == args.concurrent_batch_size {
            single64 = Some(m.samples_per_second);
        }
        rows.push(json!({
            "batch_size": b, "threads": 1, "seconds_per_epoch": m.seconds_per_epoch,
            "samples_per_second": m.samples_per_second, "gflops": gf, "fraction_of_peak": gf / peak,
            "test_accuracy": m.test_accuracy, "torch": t,
        }));
    }

    // Two trials at once, one per core, sharing one copy of the data.
    let b = args.concurrent_batch_size;
    let single = match single64 {
        Some(s) => s,
        None => {
            measure(
                &TrainConfig {
                    batch_size: b,
                    ..base.clone()
                },
                &ds,
            )?
            .samples_per_second
        }
    };
    let results: Vec<Result<Measured>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u64)
            .map(|i| {
                let cfg = TrainConfig {
                    batch_size: b,
                    seed: i,
                    ..base.clone()
                };
                let ds = &ds;
                s.spawn(move || measure(&cfg, ds))
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("bench thread panicked")))
            })
            .collect()
    });
    let mut both = 0.0;
    for r in results {
        both += r?.samples_per_second;
    }
    let t2 = if torch {
        reference("torch", b, 2, args.epochs, &data_dir)
    } else {
        None
    };
    let t2s = t2.as_ref().and_then(|t| t["samples_per_second"].as_f64());
    say(format!(
        "{:<22} {:>8} {:>11.0} {:>8.1} {:>6} {:>9} {:>14} {:>9}",
        format!("2 trials × batch {b}"),
        "-",
        both,
        flops * both / 1e9,
        "",
        "",
        t2.as_ref()
            .and_then(|t| t["median_epoch_seconds"].as_f64())
            .map_or("-".into(), |s| format!("{s:.3} (2 thr)")),
        t2s.map_or("-".into(), |s| format!("{:.2}×", both / s)),
    ));
    say(format!(
        "two concurrent trials give {:.2}× the throughput of one",
        both / single
    ));
    let np = if numpy {
        reference("numpy", 64, 1, args.epochs.min(2), &data_dir)
    } else {
        None
    };
    if let Some(n) = np.as_ref().and_then(|n| n["median_epoch_seconds"].as_f64()) {
        let ours = rows
            .iter()
            .find(|r| r["batch_size"] == 64)
            .and_then(|r| r["seconds_per_epoch"].as_f64());
        say(format!(
            "NumPy, batch 64, 1 thread: {n:.3} s/epoch{}",
            ours.map_or(String::new(), |o| format!(
                " ({:.2}× slower than ours)",
                n / o
            ))
        ));
    }
    let rss = peak_rss_of_train(&data_dir);
    if let Some(r) = rss {
        say(format!(
            "peak RSS of `worker train --epochs 1` (reference MLP, batch 64): {:.0} MB",
            r as f64 / 1e6
        ));
    }
    if args.json {
        let v = json!({
            "model": sizes, "flops_per_image": flops, "gemm_peak_gflops": peak, "epochs": args.epochs,
            "single_thread": rows,
            "concurrent": {"trials": 2, "batch_size": b, "samples_per_second": both,
                           "scaling": both / single, "torch_two_threads": t2},
            "numpy": np, "peak_rss_bytes": rss,
        });
        println!("{v}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_count_of_the_reference_mlp() {
        // 784·128 + 2·128·128 + 128·10 = 134,400 multiply-adds; the first layer needs no input
        // gradient: 4·100,352 + 6·(2·16,384 + 1,280) = 401,408 + 204,288 = 605,696 FLOP.
        assert_eq!(train_flops_per_image(&[784, 128, 128, 128, 10]), 605_696.0);
    }
}
