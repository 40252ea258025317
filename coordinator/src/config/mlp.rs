//! Someone's own sweep config on the built-in MLP (`trainer: mlp`, `coordinator run --trainer
//! mlp`): the names people give the MLP's hyperparameters in their own training scripts
//! (`activation_function`, `hidden_layer_size`, `num_hidden_layers`, `optimiser`, `lr`, …)
//! become ours; `mlp: {rename: {their_name: our_name}}` covers the rest; names that are not
//! training hyperparameters (`wandb_project`, paths, devices) are left out with a notice.
//! Values need no table: the MLP's own parsers take the usual spellings (`ReLU`, `Xavier`,
//! `glorot`, `He`, `nesterov`, `NAG`, `mgd`, `mse`) in any case.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{ConfigError, ParamSpec};

/// Spellings of our parameter names seen in real sweep configs (compared after lower-casing and
/// turning `-` and spaces into `_`).
const ALIASES: &[(&str, &[&str])] = &[
    (
        "activation",
        &[
            "activation_function",
            "activation_func",
            "activation_fn",
            "act",
            "act_fn",
            "a",
            "activations",
        ],
    ),
    (
        "hidden_size",
        &[
            "hidden_layer_size",
            "size_of_hidden_layer",
            "size_of_every_hidden_layer",
            "hidden_layer_sizes",
            "hidden_units",
            "hidden_dim",
            "hidden_neurons",
            "neurons",
            "num_neurons",
            "n_neurons",
            "sz",
            "hl_size",
            "hidden",
        ],
    ),
    (
        "num_layers",
        &[
            "num_hidden_layers",
            "hidden_layers",
            "n_hidden_layers",
            "number_of_hidden_layers",
            "no_of_hidden_layers",
            "n_layers",
            "nhl",
            "layers",
            "hidden_layer_count",
        ],
    ),
    ("optimizer", &["optimiser", "opt", "optimizer_name", "o"]),
    ("learning_rate", &["lr", "learningrate", "eta", "step_size"]),
    (
        "epochs",
        &[
            "num_epochs",
            "n_epochs",
            "max_epochs",
            "epoch",
            "no_of_epochs",
            "e",
        ],
    ),
    (
        "weight_init",
        &[
            "weight_initialisation",
            "weight_initialization",
            "weight_initializer",
            "w_i",
            "init",
            "initialization",
            "initialisation",
            "initializer",
            "init_method",
            "weight_init_method",
        ],
    ),
    (
        "batch_size",
        &["batch", "bs", "mini_batch_size", "minibatch_size", "b"],
    ),
    (
        "weight_decay",
        &[
            "wd",
            "w_d",
            "l2",
            "l2_reg",
            "l2_lambda",
            "lambda",
            "lambd",
            "l2_regularization",
            "decay",
        ],
    ),
    (
        "clip_norm",
        &[
            "max_grad_norm",
            "grad_clip",
            "gradient_clip",
            "gradient_clipping",
            "clip_grad_norm",
            "grad_norm_clip",
        ],
    ),
    (
        "loss",
        &["loss_function", "loss_fn", "loss_type", "criterion", "l"],
    ),
    (
        "dropout",
        &[
            "dropout_rate",
            "drop_rate",
            "dropout_prob",
            "dropout_p",
            "p_dropout",
            "drop_prob",
        ],
    ),
    (
        "batch_norm",
        &[
            "batchnorm",
            "bn",
            "use_batch_norm",
            "use_batchnorm",
            "use_bn",
            "batch_normalization",
            "batch_normalisation",
        ],
    ),
    (
        "lr_schedule",
        &["lr_scheduler", "scheduler", "schedule", "lr_policy"],
    ),
    (
        "lr_step_epochs",
        &["lr_step_size", "lr_decay_epochs", "step_epochs"],
    ),
    (
        "lr_gamma",
        &["gamma", "lr_decay_rate", "lr_decay_factor", "lr_decay"],
    ),
    ("lr_min", &["min_lr", "eta_min", "final_lr"]),
    (
        "warmup_epochs",
        &["warmup", "lr_warmup_epochs", "warmup_epoch"],
    ),
    ("epsilon", &["eps"]),
    ("beta1", &["beta_1"]),
    ("beta2", &["beta_2"]),
    ("momentum", &["mom", "m"]),
    ("dataset", &["data", "data_set", "dataset_name", "d"]),
];

/// Parts of names that are not training hyperparameters.
const NOT_HYPERPARAMETERS: &[&str] = &[
    "wandb",
    "project",
    "entity",
    "path",
    "dir",
    "file",
    "device",
    "gpu",
    "cuda",
    "worker",
    "log",
    "save",
    "verbose",
    "print",
    "name",
    "checkpoint",
    "output",
];

fn norm(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(['-', ' '], "_")
}

/// Our name for `name`, if it is ours or one of its known spellings.
pub fn our_name(name: &str) -> Option<&'static str> {
    if let Some(ours) = sweep_trainer::config::canonical_name(name) {
        return Some(ours);
    }
    let k = norm(name);
    ALIASES
        .iter()
        .find(|(_, spellings)| spellings.contains(&k.as_str()))
        .map(|(ours, _)| *ours)
}

/// `mlp.rename`: their name → our name, each target checked.
pub fn parse_rename(v: &Value) -> Result<BTreeMap<String, String>, ConfigError> {
    let Value::Object(m) = v else {
        return Err(ConfigError::new(
            "mlp.rename",
            "expected a mapping of your parameter names to ours, e.g. {keep_prob: dropout}",
        ));
    };
    let mut out = BTreeMap::new();
    for (theirs, ours) in m {
        let path = format!("mlp.rename.{theirs}");
        let target = ours.as_str().map(str::trim).unwrap_or("");
        if target == "ignore" {
            out.insert(theirs.clone(), "ignore".to_string());
            continue;
        }
        let Some(ours) = sweep_trainer::config::canonical_name(target) else {
            return Err(ConfigError::new(
                path,
                format!(
                    "expected one of the mlp trainer's parameters ({}) or ignore, got {}",
                    sweep_trainer::config::PARAMS.join(", "),
                    super::show(ours)
                ),
            ));
        };
        out.insert(theirs.clone(), ours.to_string());
    }
    Ok(out)
}

/// The parameters with their names made ours. Notices say what was renamed and what left out.
pub fn adapt(
    parameters: BTreeMap<String, ParamSpec>,
    rename: &BTreeMap<String, String>,
    notices: &mut Vec<String>,
) -> Result<BTreeMap<String, ParamSpec>, ConfigError> {
    let mut out: BTreeMap<String, ParamSpec> = BTreeMap::new();
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    let mut renamed = Vec::new();
    let mut ignored = Vec::new();
    for (name, spec) in parameters {
        let target = match rename.get(&name).map(String::as_str) {
            Some("ignore") => None,
            Some(ours) => Some(ours.to_string()),
            None if name.eq_ignore_ascii_case(sweep_trainer::config::PRESET) => Some(name.clone()),
            None => match our_name(&name) {
                Some(ours) => Some(ours.to_string()),
                None if NOT_HYPERPARAMETERS.iter().any(|w| norm(&name).contains(w)) => None,
                None => {
                    return Err(ConfigError::new(
                        format!("parameters.{name}"),
                        format!(
                            "the mlp trainer has no parameter {name:?} and no known spelling of one; name it with mlp: {{rename: {{{name}: OURS}}}} (OURS one of {}), or {{rename: {{{name}: ignore}}}}",
                            sweep_trainer::config::PARAMS.join(", ")
                        ),
                    ))
                }
            },
        };
        let Some(target) = target else {
            ignored.push(name);
            continue;
        };
        if let Some(first) = from.get(&target) {
            return Err(ConfigError::new(
                format!("parameters.{name}"),
                format!("{first} and {name} both mean the mlp trainer's {target}; keep one"),
            ));
        }
        if target != name {
            renamed.push(format!("{name} → {target}"));
        }
        from.insert(target.clone(), name);
        out.insert(target, spec);
    }
    if !renamed.is_empty() {
        notices.push(format!("on the mlp trainer: {}", renamed.join(", ")));
    }
    if !ignored.is_empty() {
        notices.push(format!(
            "not training hyperparameters, left out: {}",
            ignored.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::{SweepSpec, Trainer};

    #[test]
    fn an_assignment_config_runs_on_the_mlp() {
        let s = SweepSpec::parse(
            "trainer: mlp\nprogram: train.py\nmethod: random\nparameters:\n  \
             activation_function: {values: [ReLU, tanh, sigmoid]}\n  hidden_layer_size: {values: [32, 64]}\n  \
             num_hidden_layers: {values: [3, 4]}\n  optimiser: {values: [nesterov, NAG, mgd, adam]}\n  \
             lr: {values: [0.001, 0.0001]}\n  num_epochs: {value: 5}\n  weight_initialisation: {values: [Xavier, glorot, He, random]}\n  \
             loss: {value: mse}\n  wandb_project: {value: cs6910}\n  data_dir: {value: /data}\n",
        )
        .unwrap();
        assert!(matches!(s.trainer, Trainer::Mlp { .. }));
        let names: Vec<&str> = s.parameters.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "activation",
                "epochs",
                "hidden_size",
                "learning_rate",
                "loss",
                "num_layers",
                "optimizer",
                "weight_init"
            ]
        );
        s.check_trainer().unwrap();
        let all = s.notices.join("\n");
        assert!(all.contains("lr → learning_rate"), "{all}");
        assert!(all.contains("left out: data_dir, wandb_project"), "{all}");
    }

    #[test]
    fn the_layers_and_schedules_people_sweep_go_by_their_usual_names() {
        let s = SweepSpec::parse(
            "trainer: mlp\nmethod: grid\nparameters:\n  dropout_rate: {values: [0.1, 0.3]}\n  \
             use_batch_norm: {values: [true, false]}\n  lr_scheduler: {values: [cosine, step]}\n  \
             warmup: {value: 0.5}\n  min_lr: {value: 0.00001}\n  gamma: {value: 0.5}\n",
        )
        .unwrap();
        let names: Vec<&str> = s.parameters.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "batch_norm",
                "dropout",
                "lr_gamma",
                "lr_min",
                "lr_schedule",
                "warmup_epochs"
            ]
        );
        s.check_trainer().unwrap();
        // keep_prob is the trainer's own (read as 1 − dropout); a bad value names it.
        let s = SweepSpec::parse(
            "trainer: mlp\nmethod: grid\nparameters:\n  keep_prob: {values: [0.5, 0.8]}\n",
        )
        .unwrap();
        s.check_trainer().unwrap();
        let e = SweepSpec::parse(
            "trainer: mlp\nmethod: grid\nparameters:\n  keep_prob: {values: [0.5, 0]}\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "parameters.keep_prob.values[1]", "{e}");
    }

    #[test]
    fn rename_covers_the_rest_and_clashes_are_refused() {
        let s = SweepSpec::parse(
            "trainer: mlp\nmethod: grid\nmlp: {rename: {keep_units: hidden_size, dropout: ignore}}\n\
             parameters:\n  keep_units: {value: 32}\n  dropout: {value: 0.1}\n",
        )
        .unwrap();
        assert_eq!(s.parameters.keys().collect::<Vec<_>>(), ["hidden_size"]);
        let e = SweepSpec::parse(
            "trainer: mlp\nmethod: grid\nparameters:\n  lr: {value: 0.1}\n  learning_rate: {value: 0.2}\n",
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("both mean the mlp trainer's learning_rate"),
            "{e}"
        );
        let e = SweepSpec::parse(
            "trainer: mlp\nmethod: grid\nparameters:\n  temperature: {value: 0.5}\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "parameters.temperature");
        assert!(
            e.message.contains("mlp: {rename: {temperature: OURS}}"),
            "{e}"
        );
        let e = SweepSpec::parse("trainer: mlp\nmethod: grid\nmlp: {rename: {x: temperature}}\nparameters:\n  x: {value: 1}\n")
            .unwrap_err();
        assert_eq!(e.path, "mlp.rename.x");
    }
}
