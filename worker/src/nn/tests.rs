//! Finite-difference gradient checks (f64) for every activation × loss, with weight decay, and
//! with batch normalization and dropout in the hidden layers.

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The dropout generator's seed: every pass of a check draws the same masks, so the objective
/// is one fixed function of the parameters.
const MASKS: u64 = 11;

/// The objective the optimizer descends: mean data loss + λ/2 ‖W‖², as in training (batch
/// statistics, the same dropout masks every time).
fn objective(net: &Mlp<f64>, x: &Array2<f64>, y: &[u8], loss: Loss, wd: f64) -> f64 {
    let rows = x.nrows();
    let mut ws = Workspace::new(net, rows);
    ws.input_mut(rows).assign(x);
    let mode = Mode::Train(&mut ChaCha8Rng::seed_from_u64(MASKS));
    let st = net.forward_loss(&mut ws, rows, y, loss, mode);
    st.loss_sum / rows as f64 + net.decay_penalty(wd)
}

fn analytic(net: &Mlp<f64>, x: &Array2<f64>, y: &[u8], loss: Loss, wd: f64) -> Vec<f64> {
    let rows = x.nrows();
    let mut ws = Workspace::new(net, rows);
    ws.input_mut(rows).assign(x);
    let mode = Mode::Train(&mut ChaCha8Rng::seed_from_u64(MASKS));
    net.forward_loss(&mut ws, rows, y, loss, mode);
    let mut g = vec![0.0; net.num_params()];
    net.backward(&mut ws, rows, &mut g);
    for l in net.layers() {
        for i in l.w_range() {
            g[i] += wd * net.params[i];
        }
    }
    g
}

fn check(act: Activation, loss: Loss, init: Init) {
    check_with(act, loss, init, &Extras::default());
}

fn check_with(act: Activation, loss: Loss, init: Init, extras: &Extras) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let sizes = [6, 5, 4, 3];
    let mut net = Mlp::<f64>::with_extras(&sizes, act, init, extras, &mut rng);
    // Non-zero biases (and γ ≠ 1, β ≠ 0) so every term of their gradients is exercised.
    for l in net.layers().to_vec() {
        for i in l.b_range().chain(l.norm_range().unwrap_or_default()) {
            net.params[i] += rng.random_range(-0.5..0.5);
        }
    }
    let rows = 7;
    let x = Array2::from_shape_fn((rows, 6), |_| rng.random_range(-1.0..1.0));
    let y: Vec<u8> = (0..rows).map(|i| (i % 3) as u8).collect();
    let wd = 0.05;
    let g = analytic(&net, &x, &y, loss, wd);
    let h = 1e-6;
    let mut worst = 0.0f64;
    #[allow(clippy::needless_range_loop)] // `i` indexes params, which change in the loop
    for i in 0..net.num_params() {
        let orig = net.params[i];
        net.params[i] = orig + h;
        let fp = objective(&net, &x, &y, loss, wd);
        net.params[i] = orig - h;
        let fm = objective(&net, &x, &y, loss, wd);
        net.params[i] = orig;
        let num = (fp - fm) / (2.0 * h);
        // Relative error, with an absolute floor of 1e-8 for gradients near zero, where the
        // finite difference itself is only good to about 1e-10.
        let err = (num - g[i]).abs() / (num.abs() + g[i].abs()).max(1e-3);
        worst = worst.max(err);
        assert!(
            err < 1e-5,
            "{act} × {loss} ({extras:?}): parameter {i}: analytic {} vs numeric {num} (rel. err {err:e})",
            g[i]
        );
    }
    assert!(worst.is_finite());
}

#[test]
fn gradients_match_finite_differences_for_every_activation_and_loss() {
    for &act in Activation::ALL {
        for &loss in Loss::ALL {
            // Xavier keeps activations away from saturation so the check is sensitive.
            check(act, loss, Init::Xavier);
        }
    }
}

#[test]
fn gradients_match_with_batch_norm_and_dropout() {
    let norm = Extras {
        batch_norm: true,
        dropout: Vec::new(),
    };
    let drop = Extras {
        batch_norm: false,
        dropout: vec![0.3, 0.5],
    };
    let both = Extras {
        batch_norm: true,
        dropout: vec![0.0, 0.4],
    };
    for extras in [&norm, &drop, &both] {
        for &act in Activation::ALL {
            for &loss in Loss::ALL {
                check_with(act, loss, Init::Xavier, extras);
            }
        }
    }
}

#[test]
fn dropout_and_batch_norm_act_only_in_training() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let extras = Extras {
        batch_norm: true,
        dropout: vec![0.5, 0.5],
    };
    let net = Mlp::<f64>::with_extras(
        &[6, 8, 8, 3],
        Activation::Relu,
        Init::Xavier,
        &extras,
        &mut rng,
    );
    let x = Array2::from_shape_fn((5, 6), |_| rng.random_range(-1.0..1.0));
    let y = [0u8, 1, 2, 0, 1];
    let pass = |mode: Mode<'_>| {
        let mut ws = Workspace::new(&net, 5);
        ws.input_mut(5).assign(&x);
        let st = net.forward_loss(&mut ws, 5, &y, Loss::CrossEntropy, mode);
        (st.loss_sum, ws.probs(5).to_owned())
    };
    // Inference is a function of the input alone; training draws masks.
    assert_eq!(pass(Mode::Eval), pass(Mode::Eval));
    let a = pass(Mode::Train(&mut ChaCha8Rng::seed_from_u64(1)));
    let b = pass(Mode::Train(&mut ChaCha8Rng::seed_from_u64(2)));
    assert_eq!(a, pass(Mode::Train(&mut ChaCha8Rng::seed_from_u64(1))));
    assert_ne!(a.0, b.0);
    // Dropout draws no weights and is the identity in inference: the same network without it
    // gives the same probabilities.
    let build = |extras: &Extras| {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        Mlp::<f64>::with_extras(
            &[6, 8, 8, 3],
            Activation::Tanh,
            Init::Xavier,
            extras,
            &mut rng,
        )
    };
    let dropped = build(&Extras {
        batch_norm: false,
        dropout: vec![0.5, 0.2],
    });
    let plain = build(&Extras::default());
    assert_eq!(dropped.params, plain.params);
    let eval = |net: &Mlp<f64>| {
        let mut ws = Workspace::new(net, 5);
        ws.input_mut(5).assign(&x);
        net.forward_loss(&mut ws, 5, &y, Loss::CrossEntropy, Mode::Eval);
        ws.probs(5).to_owned()
    };
    assert_eq!(eval(&dropped), eval(&plain));
}

#[test]
fn gradients_match_with_he_and_random_init() {
    check(Activation::Relu, Loss::CrossEntropy, Init::He);
    check(Activation::Tanh, Loss::MeanSquaredError, Init::Random);
}

#[test]
fn a_wrong_term_is_caught() {
    // The check must be able to fail: drop the weight-decay term from the analytic gradient
    // and the comparison is far outside the tolerance.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let net = Mlp::<f64>::new(&[4, 3, 3], Activation::Sigmoid, Init::Xavier, &mut rng);
    let x = Array2::from_shape_fn((5, 4), |_| rng.random_range(-1.0..1.0));
    let y = [0u8, 1, 2, 0, 1];
    let g = analytic(&net, &x, &y, Loss::CrossEntropy, 0.0);
    let mut net2 = net.clone();
    let i = 0;
    let h = 1e-6;
    net2.params[i] += h;
    let fp = objective(&net2, &x, &y, Loss::CrossEntropy, 0.1);
    net2.params[i] -= 2.0 * h;
    let fm = objective(&net2, &x, &y, Loss::CrossEntropy, 0.1);
    let num = (fp - fm) / (2.0 * h);
    assert!((num - g[i]).abs() / (num.abs() + g[i].abs()) > 1e-3);
}

#[test]
fn softmax_cross_entropy_is_stable_for_huge_logits() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut net = Mlp::<f32>::new(&[2, 3], Activation::Relu, Init::Xavier, &mut rng);
    // Weights so large that naive exp() overflows f32.
    for p in &mut net.params {
        *p = 1.0e4;
    }
    net.params[0] = -1.0e4;
    let mut ws = Workspace::new(&net, 1);
    ws.input_mut(1).assign(&ndarray::arr2(&[[1.0f32, 1.0]]));
    let st = net.forward_loss(&mut ws, 1, &[1], Loss::CrossEntropy, Mode::Eval);
    assert!(st.loss_sum.is_finite());
    assert!(ws.probs(1).iter().all(|p| p.is_finite()));
}

#[test]
fn nan_inputs_reach_the_loss() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let net = Mlp::<f32>::new(&[2, 4, 3], Activation::Relu, Init::Xavier, &mut rng);
    let mut ws = Workspace::new(&net, 1);
    ws.input_mut(1).assign(&ndarray::arr2(&[[f32::NAN, 1.0]]));
    let st = net.forward_loss(&mut ws, 1, &[1], Loss::CrossEntropy, Mode::Eval);
    assert!(!st.loss_sum.is_finite());
}

#[test]
fn names_and_aliases_parse() {
    assert_eq!("ReLU".parse::<Activation>().unwrap(), Activation::Relu);
    assert_eq!("Xavier".parse::<Init>().unwrap(), Init::Xavier);
    assert_eq!(
        "mean_squared_error".parse::<Loss>().unwrap(),
        Loss::MeanSquaredError
    );
    assert_eq!("cross-entropy".parse::<Loss>().unwrap(), Loss::CrossEntropy);
    assert_eq!(
        "LeakyReLU".parse::<Activation>().unwrap(),
        Activation::LeakyRelu
    );
    assert_eq!("GELU".parse::<Activation>().unwrap(), Activation::Gelu);
    assert_eq!("swish".parse::<Activation>().unwrap(), Activation::Silu);
    let e = "softplus".parse::<Activation>().unwrap_err();
    assert!(e.contains("identity, sigmoid, tanh, relu"), "{e}");
}
