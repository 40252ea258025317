//! The step loop allocates nothing of its own. The `gemm` crate allocates its packing buffers
//! inside each call (about 1.5 small allocations per call, well under 1% of a step's time), so
//! the test counts the allocations of one step's eleven GEMM calls on their own and requires
//! the training loop to add none beyond them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::Array2;
use worker::data::{self, DatasetSpec};
use worker::nn::kernels::matmul;
use worker::train::{self, TrainConfig, TrialOptions};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn allocations_do_not_grow_with_steps() {
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 50,
        ..TrainConfig::default()
    };
    steps_allocate_nothing_of_their_own(&cfg);
}

#[test]
fn allocations_do_not_grow_with_steps_with_dropout_batch_norm_and_a_schedule() {
    let mut b = train::ConfigBuilder::default();
    b.merge_object(&serde_json::json!({
        "epochs": 1, "batch_size": 50, "dropout": 0.2, "batch_norm": true,
        "lr_schedule": "cosine", "warmup_epochs": 0.5, "activation": "gelu", "clip_norm": 1
    }))
    .unwrap();
    steps_allocate_nothing_of_their_own(&b.build().unwrap());
}

/// The tests of this file count every allocation of the process: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn steps_allocate_nothing_of_their_own(cfg: &TrainConfig) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let ds = data::load(&DatasetSpec::FashionMnist, &data::default_data_dir()).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let count = |n: usize| {
        let opts = TrialOptions {
            train_samples: Some(n),
            ..Default::default()
        };
        let before = ALLOCS.load(Ordering::Relaxed);
        pool.install(|| train::run_trial(cfg, &ds, &opts, &mut train::NoObserver))
            .unwrap();
        ALLOCS.load(Ordering::Relaxed) - before
    };
    count(1_000); // warm-up: thread-locals, rayon
    let small = count(1_000); // 20 steps
    let large = count(11_000); // 220 steps
    let per_step = (large as f64 - small as f64) / 200.0;
    let gemm = pool.install(|| gemm_allocs_per_step(&[784, 128, 128, 128, 10], 50));
    eprintln!("allocations: {small} for 20 steps, {large} for 220 steps: {per_step} per step; the step's GEMM calls alone: {gemm}");
    assert!(
        per_step <= gemm as f64 + 0.01,
        "{per_step} allocations per step, {gemm} of them in gemm"
    );
}

/// Allocations made by the GEMM calls of one training step, with the same shapes and strides.
fn gemm_allocs_per_step(sizes: &[usize], b: usize) -> usize {
    let acts: Vec<Array2<f32>> = sizes.iter().map(|&w| Array2::zeros((b, w))).collect();
    let ws: Vec<Array2<f32>> = sizes
        .windows(2)
        .map(|w| Array2::zeros((w[0], w[1])))
        .collect();
    let mut gws = ws.clone();
    let mut deltas = acts.clone();
    let mut outs = acts.clone();
    let run =
        |outs: &mut Vec<Array2<f32>>, gws: &mut Vec<Array2<f32>>, deltas: &mut Vec<Array2<f32>>| {
            for l in 0..ws.len() {
                matmul(outs[l + 1].view_mut(), acts[l].view(), ws[l].view(), true);
            }
            for l in (0..ws.len()).rev() {
                matmul(gws[l].view_mut(), acts[l].t(), acts[l + 1].view(), false);
                if l > 0 {
                    matmul(deltas[l].view_mut(), acts[l + 1].view(), ws[l].t(), false);
                }
            }
        };
    run(&mut outs, &mut gws, &mut deltas);
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..10 {
        run(&mut outs, &mut gws, &mut deltas);
    }
    (ALLOCS.load(Ordering::Relaxed) - before).div_ceil(10)
}
