//! The names a trial's choices go by — activation, loss, weight initialisation, optimizer —
//! with the spellings the original assignment and W&B configs use, parsed in any case.

/// A name as it is compared: trimmed, lower case, `-` and spaces as `_`.
pub fn norm_key(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace(['-', ' '], "_")
}

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $var:ident = $canon:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $var),+
        }

        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The canonical (snake_case) name.
            pub fn name(self) -> &'static str {
                match self { $($name::$var => $canon),+ }
            }

            /// The canonical names, comma-separated, for error messages.
            pub fn expected() -> String {
                [$($canon),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            /// Accepts the canonical name and the original assignment's spellings, in any case.
            fn from_str(s: &str) -> Result<Self, String> {
                let k = $crate::names::norm_key(s);
                $(if k == $canon $(|| k == $alias)* { return Ok($name::$var); })+
                Err(format!("expected one of {}, got {s:?}", $name::expected()))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
    };
}

named_enum!(
    /// Hidden-layer activation function.
    Activation, "activation" {
        /// `f(z) = z`.
        Identity = "identity" | "linear" | "none",
        /// `f(z) = 1 / (1 + e^-z)`.
        Sigmoid = "sigmoid" | "logistic",
        /// `f(z) = tanh z`.
        Tanh = "tanh",
        /// `f(z) = max(z, 0)`.
        Relu = "relu",
        /// `f(z) = z` for `z > 0`, else `0.01 z` (PyTorch's default slope).
        LeakyRelu = "leaky_relu" | "leakyrelu" | "lrelu",
        /// `f(z) = z Φ(z)`, Φ the standard normal CDF (the exact form, PyTorch's default).
        Gelu = "gelu",
        /// `f(z) = z σ(z)` (also called swish).
        Silu = "silu" | "swish",
    }
);

named_enum!(
    /// Training loss on the softmax output.
    Loss, "loss" {
        /// Mean negative log-likelihood of the true class.
        CrossEntropy = "cross_entropy" | "crossentropy" | "ce" | "categorical_crossentropy",
        /// Mean over samples of the summed squared error of the softmax output vs one-hot.
        MeanSquaredError = "mean_squared_error" | "mse" | "squared_error",
    }
);

named_enum!(
    /// Weight initialisation (biases start at zero).
    Init, "weight_init" {
        /// Normal with standard deviation [`RANDOM_INIT_STD`].
        Random = "random" | "normal",
        /// Glorot & Bengio (2010) uniform: `U(±√(6 / (fan_in + fan_out)))`.
        Xavier = "xavier" | "glorot" | "xavier_uniform" | "glorot_uniform",
        /// He et al. (2015) normal: `N(0, 2 / fan_in)`.
        He = "he" | "kaiming" | "he_normal",
    }
);

named_enum!(
    /// The optimizer of a trial.
    OptimizerKind, "optimizer" {
        /// Plain stochastic gradient descent.
        Sgd = "sgd" | "gd" | "vanilla",
        /// Momentum (heavy ball).
        Momentum = "momentum" | "mgd" | "momentum_gd",
        /// Nesterov accelerated gradient.
        Nag = "nag" | "nesterov" | "nesterov_momentum",
        /// RMSprop.
        Rmsprop = "rmsprop" | "rms_prop",
        /// Adam.
        Adam = "adam",
        /// Nesterov-accelerated Adam.
        Nadam = "nadam",
        /// Adam with decoupled weight decay (Loshchilov & Hutter).
        AdamW = "adamw" | "adam_w",
        /// Adagrad.
        Adagrad = "adagrad" | "ada_grad",
    }
);

named_enum!(
    /// How the learning rate moves over a trial, after any warm-up.
    Schedule, "lr_schedule" {
        /// The learning rate throughout.
        Constant = "constant" | "none" | "fixed",
        /// Multiplied by `lr_gamma` every `lr_step_epochs` epochs (PyTorch's `StepLR`).
        Step = "step" | "step_lr" | "steplr",
        /// From the learning rate down to `lr_min` along half a cosine over the steps after
        /// warm-up (PyTorch's `CosineAnnealingLR` stepped per batch, one half-period).
        Cosine = "cosine" | "cos" | "cosine_annealing" | "cosineannealinglr",
    }
);
