//! W&B's `program` and `command` keys: a sweep whose trials run the user's own program, and
//! our `program_options` beside them (`time_limit`, `wandb_shim`, `max_files_mb`,
//! `max_media_mb`, `gpus`).

use serde_json::{Map, Value};

use super::{show, ConfigError};

/// Most GPUs one trial asks for: all a worker can register.
pub const MAX_GPUS_PER_TRIAL: u32 = 64;

/// Most workers one trial runs on at once.
pub const MAX_NODES_PER_TRIAL: u32 = 64;

/// Longest `command` list.
pub const MAX_COMMAND_WORDS: usize = 1024;

/// MiB of files a program trial hands back when `program_options.max_files_mb` does not say.
pub const DEFAULT_MAX_FILES_MB: u32 = 64;

fn default_max_files_mb() -> u32 {
    DEFAULT_MAX_FILES_MB
}

/// MiB of logged media (`wandb.Image`, `Table`, `Html`) a trial keeps when
/// `program_options.max_media_mb` does not say.
pub const DEFAULT_MAX_MEDIA_MB: u32 = 10;

fn default_max_media_mb() -> u32 {
    DEFAULT_MAX_MEDIA_MB
}

/// What runs each trial of a program sweep (built into argv on the worker, as W&B's agent does).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProgramSpec {
    /// `program`: the script, relative to the worker's working directory.
    pub program: Option<String>,
    /// `command`: words with macros (`${env}`, `${interpreter}`, `${program}`, `${args}`, …);
    /// `None` means W&B's default `${env} ${interpreter} ${program} ${args}`.
    pub command: Option<Vec<String>>,
    /// `program_options.time_limit`: seconds a trial may run before it is stopped.
    pub time_limit_s: Option<f64>,
    /// `program_options.wandb_shim` (default true): put our `wandb` module first on the
    /// program's `PYTHONPATH`.
    pub wandb_shim: bool,
    /// `program_options.max_files_mb`: MiB of files each trial's program may hand back
    /// (docs/PROGRAMS.md); 0 keeps none.
    #[serde(default = "default_max_files_mb")]
    pub max_files_mb: u32,
    /// `program_options.max_media_mb`: MiB of logged media each trial keeps (part of its
    /// files, and kept for every trial, not only the best).
    #[serde(default = "default_max_media_mb")]
    pub max_media_mb: u32,
    /// `program_options.gpus`: GPUs each trial runs with (0: none; the trial then goes to any
    /// worker, and one with GPUs hides them from it).
    #[serde(default)]
    pub gpus: u32,
    /// `program_options.nodes`: workers (machines) each trial runs on at once, a gang: one
    /// process per worker, told its rank and rank 0's address (default 1).
    #[serde(default = "one")]
    pub nodes: u32,
}

fn one() -> u32 {
    1
}

impl ProgramSpec {
    /// What a lease carries to the worker (`Trial.trainer_options`); `max_files_mb` is what
    /// the sweep keeps (none when it keeps no trial's outputs).
    pub fn options(&self, max_files_mb: u32) -> Value {
        serde_json::json!({
            "program": self.program,
            "command": self.command,
            "time_limit_s": self.time_limit_s,
            "wandb_shim": self.wandb_shim,
            "max_files_mb": max_files_mb,
            "max_media_mb": self.max_media_mb.min(max_files_mb),
            "gpus": self.gpus,
            "nodes": self.nodes,
        })
    }
}

/// The program part of a config, if it has `program` or `command`.
pub fn parse(top: &Map<String, Value>) -> Result<Option<ProgramSpec>, ConfigError> {
    let program = match top.get("program") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 4096 => Some(s.clone()),
        Some(v) => {
            return Err(ConfigError::new(
                "program",
                format!(
                    "expected the path of the training script (e.g. train.py), got {}",
                    show(v)
                ),
            ))
        }
    };
    let command = match top.get("command") {
        None | Some(Value::Null) => None,
        Some(Value::Array(words)) => {
            if words.len() > MAX_COMMAND_WORDS {
                return Err(ConfigError::new(
                    "command",
                    format!("{} words; at most {MAX_COMMAND_WORDS}", words.len()),
                ));
            }
            let mut out = Vec::with_capacity(words.len());
            for (i, w) in words.iter().enumerate() {
                out.push(match w {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
                    v => {
                        return Err(ConfigError::new(
                            format!("command[{i}]"),
                            format!("expected a word (a string), got {}", show(v)),
                        ))
                    }
                });
            }
            Some(out)
        }
        Some(v) => {
            return Err(ConfigError::new(
                "command",
                format!(
                    "expected a list of words, e.g. [\"${{env}}\", \"python\", \"${{program}}\", \"${{args}}\"], got {}",
                    show(v)
                ),
            ))
        }
    };
    if program.is_none() && command.is_none() {
        return Ok(None);
    }
    let words = command.as_deref().unwrap_or_default();
    if program.is_none() && (words.is_empty() || words.iter().any(|w| w == "${program}")) {
        return Err(ConfigError::new(
            "program",
            "missing; the command uses ${program} (or is empty, which means W&B's default ${env} ${interpreter} ${program} ${args})",
        ));
    }
    let mut spec = ProgramSpec {
        program,
        command: command.filter(|c| !c.is_empty()),
        time_limit_s: None,
        wandb_shim: true,
        max_files_mb: DEFAULT_MAX_FILES_MB,
        max_media_mb: DEFAULT_MAX_MEDIA_MB,
        gpus: 0,
        nodes: 1,
    };
    if let Some(o) = top.get("program_options") {
        let Value::Object(o) = o else {
            return Err(ConfigError::new(
                "program_options",
                "expected a mapping, e.g. {time_limit: 3600, wandb_shim: true, max_files_mb: 64, max_media_mb: 10, gpus: 1, nodes: 1}",
            ));
        };
        for (k, v) in o {
            let p = format!("program_options.{k}");
            match k.as_str() {
                "time_limit" => {
                    spec.time_limit_s = Some(
                        v.as_f64()
                            .filter(|s| *s > 0.0 && *s <= 30.0 * 86_400.0)
                            .ok_or_else(|| {
                                ConfigError::new(
                                    p,
                                    format!(
                                        "expected seconds, more than 0 and at most 2592000 (30 days), got {}",
                                        show(v)
                                    ),
                                )
                            })?,
                    )
                }
                "wandb_shim" => {
                    spec.wandb_shim = v.as_bool().ok_or_else(|| {
                        ConfigError::new(p, format!("expected true or false, got {}", show(v)))
                    })?
                }
                "max_files_mb" => spec.max_files_mb = mib(v, p, "files")?,
                "max_media_mb" => spec.max_media_mb = mib(v, p, "media")?,
                "gpus" => {
                    spec.gpus = v
                        .as_u64()
                        .filter(|n| *n <= MAX_GPUS_PER_TRIAL as u64)
                        .map(|n| n as u32)
                        .ok_or_else(|| {
                            ConfigError::new(
                                p,
                                format!(
                                    "expected how many GPUs each trial runs with, a whole number from 0 to {MAX_GPUS_PER_TRIAL} (one worker's GPUs), got {}",
                                    show(v)
                                ),
                            )
                        })?
                }
                "nodes" => {
                    spec.nodes = v
                        .as_u64()
                        .filter(|n| (1..=MAX_NODES_PER_TRIAL as u64).contains(n))
                        .map(|n| n as u32)
                        .ok_or_else(|| {
                            ConfigError::new(
                                p,
                                format!(
                                    "expected how many workers each trial runs on at once, a whole number from 1 to {MAX_NODES_PER_TRIAL}, got {}",
                                    show(v)
                                ),
                            )
                        })?
                }
                _ => {
                    return Err(ConfigError::new(
                        p,
                        "unknown key; expected time_limit, wandb_shim, max_files_mb, max_media_mb, gpus, nodes",
                    ))
                }
            }
        }
    }
    Ok(Some(spec))
}

/// Whole MiB from 0 (keep no `what`) to what a trial's files may take.
fn mib(v: &Value, path: String, what: &str) -> Result<u32, ConfigError> {
    let max = sweep_proto::files::MAX_FILES_BYTES >> 20;
    v.as_u64()
        .filter(|mb| *mb <= max)
        .map(|mb| mb as u32)
        .ok_or_else(|| {
            ConfigError::new(
                path,
                format!(
                    "expected whole MiB from 0 (keep no {what}) to {max}, got {}",
                    show(v)
                ),
            )
        })
}
