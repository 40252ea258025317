//! The `worker train` command line that reproduces a trial of the built-in MLP.

use serde_json::Value;

/// The `worker train` command line that trains a trial of the built-in MLP again: its
/// parameters as flags, its seed (`params`' own `seed` wins, as it does in a sweep) and its
/// training-image limit. Names that are not flags (none in a trial that trained) go in a
/// `--config` given inline.
pub fn command_line(
    params: &serde_json::Map<String, Value>,
    seed: u64,
    train_samples: Option<u64>,
) -> String {
    let mut out = vec!["worker".to_string(), "train".to_string()];
    let mut rest = serde_json::Map::new();
    let mut seed = seed;
    for (k, v) in params {
        match crate::config::canonical_name(k) {
            Some("seed") if v.as_u64().is_some() => seed = v.as_u64().unwrap_or(seed),
            Some(name) => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                out.push(format!("--{}", name.replace('_', "-")));
                out.push(shell_word(&text));
            }
            None => {
                rest.insert(k.clone(), v.clone());
            }
        }
    }
    out.push("--seed".into());
    out.push(seed.to_string());
    if let Some(n) = train_samples {
        out.push("--train-samples".into());
        out.push(n.to_string());
    }
    if !rest.is_empty() {
        out.push("--config".into());
        out.push(format!(
            "<(echo {})",
            shell_word(&Value::Object(rest).to_string())
        ));
    }
    out.join(" ")
}

/// `s` as one word of a POSIX shell command.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.,:/+-=@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_that_a_shell_would_split_are_quoted() {
        assert_eq!(shell_word("0.001"), "0.001");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
