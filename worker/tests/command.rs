//! A program trial's argv against W&B's own agent: every case of
//! `../shared/golden/wandb/command.json` (or `$SWEEP_GOLDEN_DIR/command.json`).

use std::fmt;
use std::path::PathBuf;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use worker::program::command;

/// A JSON object with its keys in the file's order (W&B's `${args}` keeps the run's order).
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = m.next_entry::<String, Value>()? {
                    v.push((k, x));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(serde::Deserialize)]
struct Case {
    command: Option<Vec<String>>,
    program: String,
    params: Ordered,
    argv: Vec<String>,
    args_json_file_content: String,
}

#[derive(serde::Deserialize)]
struct Golden {
    environment: std::collections::HashMap<String, String>,
    cases: Vec<Case>,
}

#[test]
fn argv_equals_wandb_agent_on_every_golden_case() {
    let dir = std::env::var_os("SWEEP_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden/wandb")
        });
    let path = dir.join("command.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("golden file {} ({e}); set SWEEP_GOLDEN_DIR", path.display()));
    let golden: Golden = serde_json::from_str(&text).expect("golden JSON");
    assert!(golden.cases.len() >= 100, "{} cases", golden.cases.len());
    let env = |name: &str| golden.environment.get(name).cloned();
    let mut wrong = Vec::new();
    for (i, c) in golden.cases.iter().enumerate() {
        let ctx = command::Context {
            program: Some(&c.program),
            interpreter: "python",
            args_json_file: "ARGS_JSON_FILE",
            env: &env,
        };
        let argv = command::argv(c.command.as_deref(), &c.params.0, &ctx);
        if argv != c.argv {
            wrong.push(format!(
                "case {i}: {:?}\n  want {:?}\n  got  {:?}",
                c.command, c.argv, argv
            ));
        }
        let json = command::args_json(&c.params.0);
        if json != c.args_json_file_content {
            wrong.push(format!(
                "case {i}: args_json\n  want {}\n  got  {json}",
                c.args_json_file_content
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        golden.cases.len(),
        wrong.join("\n")
    );
}
