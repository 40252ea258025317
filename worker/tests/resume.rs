//! A trial resumed from a checkpoint — at an epoch boundary or between two batches, after the
//! checkpoint went through its bytes — ends with exactly the numbers and weights of a run that
//! was never interrupted.

use std::sync::Arc;

use worker::data::{self, DatasetSpec};
use worker::train::{
    self, Cancel, Checkpoint, EpochMetrics, Observer, Position, Status, TrainConfig, TrainError,
    TrialOptions, TrialResult,
};

fn fashion() -> Arc<data::Dataset> {
    data::load(&DatasetSpec::FashionMnist, &data::default_data_dir()).expect("fashion_mnist loads")
}

/// Every piece of state a resume must carry: dropout masks, batch norm's running estimates,
/// Adam's moments and step count, a schedule that depends on the step.
fn cfg() -> TrainConfig {
    let j = serde_json::json!({
        "epochs": 3, "batch_size": 50, "seed": 7, "num_layers": 2, "hidden_size": 32,
        "optimizer": "adam", "learning_rate": 0.003, "dropout": 0.2, "batch_norm": true,
        "lr_schedule": "cosine", "warmup_epochs": 0.5, "weight_decay": 0.0001,
    });
    TrainConfig::from_map(j.as_object().unwrap()).unwrap()
}

const IMAGES: usize = 1500;

/// Keeps every checkpoint (through its bytes) and, optionally, hands the trial back at a
/// given (epoch, batch).
#[derive(Default)]
struct Keeper {
    checkpoints: Vec<Checkpoint>,
    hand_back_at: Option<(usize, usize)>,
    cancel: Cancel,
}

impl Observer for Keeper {
    fn on_batch(&mut self, epoch: usize, batch: usize, _: usize) {
        if self.hand_back_at == Some((epoch, batch)) {
            self.cancel.hand_back();
        }
    }
    fn on_checkpoint(&mut self, ck: Checkpoint) {
        let back = Checkpoint::decode(&ck.encode()).expect("decodes");
        assert_eq!(back, ck);
        self.checkpoints.push(back);
    }
}

fn run(
    keeper: &mut Keeper,
    checkpoints: bool,
    resume: Option<Checkpoint>,
) -> Result<TrialResult, TrainError> {
    let opts = TrialOptions {
        train_samples: Some(IMAGES),
        cancel: Some(keeper.cancel.clone()),
        checkpoints,
        resume,
    };
    train::run_trial(&cfg(), &fashion(), &opts, keeper)
}

/// Per-epoch metrics, test loss and accuracy, parameters and running estimates, as bits.
type Numbers = (Vec<[u64; 4]>, Option<(u64, u64)>, Vec<u32>);

/// The numbers a run ends with (timings aside).
fn numbers(r: &TrialResult) -> Numbers {
    let epochs = r
        .epochs
        .iter()
        .map(|m: &EpochMetrics| {
            assert_eq!(m.epoch, r.epochs.iter().position(|x| x == m).unwrap() + 1);
            [m.loss, m.accuracy, m.val_loss, m.val_accuracy].map(f64::to_bits)
        })
        .collect();
    let test = r
        .test
        .as_ref()
        .map(|t| (t.loss.to_bits(), t.accuracy.to_bits()));
    let net = r.net.as_ref().expect("a network");
    let bits = net
        .params
        .iter()
        .chain(&net.stats)
        .map(|x| x.to_bits())
        .collect();
    (epochs, test, bits)
}

#[test]
fn a_resumed_trial_ends_bit_identical_to_an_uninterrupted_one() {
    // Uninterrupted, without and with checkpoints: taking them changes nothing.
    let plain = run(&mut Keeper::default(), false, None).unwrap();
    let mut k = Keeper::default();
    let whole = run(&mut k, true, None).unwrap();
    assert_eq!(whole.status, Status::Finished);
    assert_eq!(numbers(&plain), numbers(&whole));
    // One after each epoch but the last.
    let at: Vec<Position> = k.checkpoints.iter().map(|c| c.at).collect();
    assert_eq!(
        at,
        [
            Position { epoch: 1, batch: 0 },
            Position { epoch: 2, batch: 0 }
        ]
    );

    // From each epoch boundary.
    for ck in k.checkpoints.clone() {
        let r = run(&mut Keeper::default(), true, Some(ck.clone())).unwrap();
        assert_eq!(r.status, Status::Finished);
        assert_eq!(numbers(&r), numbers(&whole), "resumed from {:?}", ck.at);
    }

    // Handed back between two batches of epoch 2 (batch 11 of 30), then resumed; and the
    // resumed run handed back again in epoch 3 and resumed once more.
    let mut first = Keeper {
        hand_back_at: Some((2, 11)),
        ..Keeper::default()
    };
    let cut = run(&mut first, true, None).unwrap();
    assert_eq!(cut.status, Status::Cancelled);
    let mid = first.checkpoints.pop().unwrap();
    assert_eq!(
        mid.at,
        Position {
            epoch: 1,
            batch: 11
        }
    );
    let mut second = Keeper {
        hand_back_at: Some((3, 29)),
        ..Keeper::default()
    };
    let cut = run(&mut second, true, Some(mid)).unwrap();
    assert_eq!(cut.status, Status::Cancelled);
    let late = second.checkpoints.pop().unwrap();
    assert_eq!(
        late.at,
        Position {
            epoch: 2,
            batch: 29
        }
    );
    let r = run(&mut Keeper::default(), true, Some(late)).unwrap();
    assert_eq!(numbers(&r), numbers(&whole));

    // Handed back at the last batch of an epoch: the resumed run starts with its validation.
    let mut edge = Keeper {
        hand_back_at: Some((1, 30)),
        ..Keeper::default()
    };
    run(&mut edge, true, None).unwrap();
    let ck = edge.checkpoints.pop().unwrap();
    assert_eq!(
        ck.at,
        Position {
            epoch: 0,
            batch: 30
        }
    );
    let r = run(&mut Keeper::default(), true, Some(ck)).unwrap();
    assert_eq!(numbers(&r), numbers(&whole));
}

#[test]
fn a_checkpoint_of_another_trial_is_refused() {
    let mut k = Keeper::default();
    run(&mut k, true, None).unwrap();
    let ck = k.checkpoints[0].clone();
    // Another seed: another trial.
    let mut other = cfg();
    other.seed += 1;
    let opts = TrialOptions {
        train_samples: Some(IMAGES),
        resume: Some(ck.clone()),
        ..Default::default()
    };
    let e = train::run_trial(&other, &fashion(), &opts, &mut train::NoObserver).unwrap_err();
    assert!(e.to_string().contains("fingerprint"), "{e}");
    // Other training images.
    let opts = TrialOptions {
        train_samples: Some(IMAGES - 1),
        resume: Some(ck.clone()),
        ..Default::default()
    };
    let e = train::run_trial(&cfg(), &fashion(), &opts, &mut train::NoObserver).unwrap_err();
    assert!(e.to_string().contains("fingerprint"), "{e}");
    // Its own trial, but a damaged order.
    let mut bad = ck;
    bad.order[0] = bad.order[1];
    let opts = TrialOptions {
        train_samples: Some(IMAGES),
        resume: Some(bad),
        ..Default::default()
    };
    let e = train::run_trial(&cfg(), &fashion(), &opts, &mut train::NoObserver).unwrap_err();
    assert!(e.to_string().contains("image order"), "{e}");
}
