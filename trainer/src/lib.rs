//! The trainer vocabulary the coordinator and the worker share: the built-in MLP trainer's
//! parameter names and their checks (a config validated at submit exactly as the worker will
//! read it), the names of activations, losses, initialisations, optimizers and data sets, the
//! synthetic trainer's test functions, the `worker train` command that reproduces a trial, a
//! confusion matrix as text, names made safe for a terminal, and the file names of a saved model. No training happens here: that is the `worker` crate's.

pub mod command;
pub mod config;
pub mod confusion;
pub mod dataset;
pub mod names;
pub mod text;

/// The functions the synthetic trainer knows.
pub const SYNTHETIC_FUNCTIONS: [&str; 12] = [
    "branin",
    "hartmann3",
    "hartmann6",
    "rosenbrock",
    "levy",
    "ackley",
    "styblinski_tang",
    "quadratic",
    "zdt1",
    "zdt2",
    "zdt3",
    "dtlz2",
];

/// A saved model's card, in its directory (docs/MODELS.md).
pub const MODEL_CARD: &str = "model.json";
/// A saved model's weights, beside its card.
pub const MODEL_WEIGHTS: &str = "model.safetensors";
