//! The command line of a trial that runs a user's program, built as W&B's agent builds it.
//!
//! A sweep's `command` is a list of words; a word that is exactly `${name}` is a macro and is
//! replaced by zero or more words (`${args}` by one `--name=value` per parameter, an unknown
//! macro by nothing); `${envvar:NAME}` anywhere inside a word is replaced by the variable, or by
//! `NAME` when it is unset. Values are written as Python's `str` writes them (`1e-05`, `True`,
//! `None`, `[128, 64]`, `{'beta1': 0.9}`), because that is what a W&B user's script receives.
//! `../shared/golden/wandb/command.json` holds W&B's own answers; `tests/command.rs` checks them.

use serde_json::Value;

/// The command W&B runs when a sweep names only a `program`.
pub const DEFAULT_COMMAND: [&str; 4] = ["${env}", "${interpreter}", "${program}", "${args}"];

/// What the macros of one trial expand to besides its parameters.
#[derive(Clone)]
pub struct Context<'a> {
    /// The sweep's `program` (`${program}`), if any.
    pub program: Option<&'a str>,
    /// `${interpreter}` (W&B: `python`).
    pub interpreter: &'a str,
    /// Where `${args_json_file}` points (the file is written by the caller).
    pub args_json_file: &'a str,
    /// Looks up `${envvar:NAME}`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("program", &self.program)
            .field("interpreter", &self.interpreter)
            .field("args_json_file", &self.args_json_file)
            .finish_non_exhaustive()
    }
}

/// Whether a command uses `${args_json_file}` (then the caller writes that file first).
pub fn uses_args_json_file(command: &[String]) -> bool {
    command.iter().any(|c| c == "${args_json_file}")
}

/// The argv of one trial: `command` (or [`DEFAULT_COMMAND`]) with every macro expanded.
pub fn argv(
    command: Option<&[String]>,
    params: &[(String, Value)],
    ctx: &Context<'_>,
) -> Vec<String> {
    let default: Vec<String> = DEFAULT_COMMAND.iter().map(|s| s.to_string()).collect();
    let command = command.filter(|c| !c.is_empty()).unwrap_or(&default);
    let mut out = Vec::new();
    for word in command {
        let word = expand_envvars(word, ctx.env);
        let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) else {
            out.push(word);
            continue;
        };
        let flags = |prefix: &str| -> Vec<String> {
            params
                .iter()
                .map(|(k, v)| format!("{prefix}{k}={}", py_str(v)))
                .collect()
        };
        match name {
            "env" => out.push("/usr/bin/env".into()),
            "interpreter" => out.push(ctx.interpreter.into()),
            "program" => out.extend(ctx.program.map(str::to_string)),
            "args" => out.extend(flags("--")),
            "args_no_hyphens" => out.extend(flags("")),
            "args_append_hydra" => out.extend(flags("+")),
            "args_override_hydra" => out.extend(flags("++")),
            "args_no_equals" => {
                for (k, v) in params {
                    out.push(format!("--{k}"));
                    out.push(py_str(v));
                }
            }
            "args_no_boolean_flags" => {
                for (k, v) in params {
                    match v {
                        Value::Bool(true) => out.push(format!("--{k}")),
                        Value::Bool(false) => {}
                        v => out.push(format!("--{k}={}", py_str(v))),
                    }
                }
            }
            "args_json" => out.push(args_json(params)),
            "args_json_file" => out.push(ctx.args_json_file.into()),
            // W&B drops a macro it does not know.
            _ => {}
        }
    }
    out
}

/// `${envvar:NAME}` (NAME of `A-Z`, `0-9`, `_`) replaced by the variable or by `NAME`.
fn expand_envvars(word: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    const OPEN: &str = "${envvar:";
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find(OPEN) {
        let after = &rest[at + OPEN.len()..];
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        if after.as_bytes().get(name_len) != Some(&b'}') {
            out.push_str(&rest[..at + OPEN.len()]);
            rest = after;
            continue;
        }
        let name = &after[..name_len];
        out.push_str(&rest[..at]);
        out.push_str(&env(name).unwrap_or_else(|| name.to_string()));
        rest = &after[name_len + 1..];
    }
    out.push_str(rest);
    out
}

/// The parameters as Python's `json.dumps` writes them (`${args_json}` and its file).
pub fn args_json(params: &[(String, Value)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        py_json_str(&mut s, k);
        s.push_str(": ");
        py_json(&mut s, v);
    }
    s.push('}');
    s
}

fn py_json(out: &mut String, v: &Value) {
    flow(out, v, json_number);
}

/// A number as Python's `json.dumps` writes it (`NaN`, `Infinity` for what JSON lacks).
fn json_number(out: &mut String, n: &serde_json::Number) {
    match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => out.push_str(&i.to_string()),
        (None, Some(u), _) => out.push_str(&u.to_string()),
        (_, _, Some(f)) if f.is_nan() => out.push_str("NaN"),
        (_, _, Some(f)) if f.is_infinite() => {
            out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
        }
        (_, _, Some(f)) => out.push_str(&py_float(f)),
        _ => out.push_str("null"),
    }
}

/// JSON-style flow text (`[1, 2]`, `{"a": 1}`, Python's separators, ASCII strings) with
/// numbers written by `number`: what `json.dumps` writes, and flow YAML that PyYAML reads.
fn flow(out: &mut String, v: &Value, number: fn(&mut String, &serde_json::Number)) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => number(out, n),
        Value::String(s) => py_json_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(out, x, number);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_json_str(out, k);
                out.push_str(": ");
                flow(out, x, number);
            }
            out.push('}');
        }
    }
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii`: `\u00fc`).
fn py_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A value as Python's `str()` writes it: strings bare, everything else as [`py_repr`].
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => py_repr(v),
    }
}

/// A value as Python's `repr()` writes it (`'adam'`, `1e-05`, `True`, `None`, `[1, 2]`,
/// `{'a': 1}`).
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => py_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => py_repr_str(s),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", py_repr_str(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A float as Python's `repr` writes it: the shortest digits that read back the same, in
/// positional notation for exponents -4 to 15 (`0.0001`, `3.0`) and scientific otherwise
/// (`1e-05`, `1e+16`, `2.5e-07`).
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-2.5e-7", "1e16", "0e0".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if exp + 1 >= n {
            format!("{digits}{}.0", "0".repeat((exp + 1 - n) as usize))
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

/// A string as Python's `repr` writes it: single quotes unless the text has a `'` and no `"`;
/// backslashes, the quote and control characters escaped; printable Unicode kept.
pub fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_printable(c) => {
                let u = c as u32;
                if u <= 0xff {
                    out.push_str(&format!("\\x{u:02x}"));
                } else if u <= 0xffff {
                    out.push_str(&format!("\\u{u:04x}"));
                } else {
                    out.push_str(&format!("\\U{u:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable` for the characters configs contain: not a control character, not
/// a separator other than the space, not a format character such as a bidi override.
fn py_printable(c: char) -> bool {
    let u = c as u32;
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(u, 0xad | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0xfeff)
        || (0xd800..=0xdfff).contains(&u))
}

/// The file W&B's agent writes for each run (`WANDB_SWEEP_PARAM_PATH`): `wandb_version: 1` and
/// one `name: {value: v}` entry per parameter, as YAML that PyYAML reads back to the same
/// values (floats always carry a `.` and a signed exponent, strings are quoted).
pub fn param_file_yaml(params: &[(String, Value)]) -> String {
    let mut s = String::from("wandb_version: 1\n");
    for (k, v) in params {
        s.push('\n');
        yaml_flow(&mut s, &Value::String(k.clone()));
        s.push_str(":\n  value: ");
        yaml_flow(&mut s, v);
    }
    s.push('\n');
    s
}

fn yaml_flow(out: &mut String, v: &Value) {
    flow(out, v, yaml_number);
}

/// A number as PyYAML reads it back: a float always with a dot and a signed exponent
/// (`1.0e-05`), `.nan`, `.inf`.
fn yaml_number(out: &mut String, n: &serde_json::Number) {
    if !n.is_f64() {
        out.push_str(&n.to_string());
        return;
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f.is_nan() {
        out.push_str(".nan");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { ".inf" } else { "-.inf" });
    } else {
        let r = py_float(f);
        match r.split_once('e') {
            Some((m, e)) if !m.contains('.') => out.push_str(&format!("{m}.0e{e}")),
            _ => out.push_str(&r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_as_python_repr() {
        for (f, want) in [
            (1e16, "1e+16"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (1e15, "1000000000000000.0"),
            (-0.0, "-0.0"),
            (3.0, "3.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-123.25, "-123.25"),
            (1e22, "1e+22"),
            (1e-300, "1e-300"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(py_float(f), want, "{f}");
        }
    }

    #[test]
    fn strings_repr_with_python_quotes() {
        assert_eq!(py_repr_str("adam"), "'adam'");
        assert_eq!(py_repr_str("it's"), "\"it's\"");
        assert_eq!(py_repr_str("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr_str("tab\there\u{7}"), "'tab\\there\\x07'");
        assert_eq!(py_repr_str("ümlaut\u{202e}"), "'ümlaut\\u202e'");
        assert_eq!(
            py_str(&json!({"b": [1, "x", null], "a": true})),
            "{'a': True, 'b': [1, 'x', None]}"
        );
    }

    #[test]
    fn envvar_macros_expand_inside_words() {
        let env = |n: &str| (n == "HOME_DIR").then(|| "/h".to_string());
        assert_eq!(
            expand_envvars("--d=${envvar:HOME_DIR}/x${envvar:NOPE}", &env),
            "--d=/h/xNOPE"
        );
        // Lower-case names are not W&B's pattern and stay as written.
        assert_eq!(expand_envvars("${envvar:lower}", &env), "${envvar:lower}");
    }

    #[test]
    fn param_file_reads_back_as_the_same_values() {
        let p = vec![
            ("lr".to_string(), json!(1e-5)),
            ("act".to_string(), json!("relu")),
            ("n".to_string(), json!(3)),
            ("h".to_string(), json!([64, 0.5])),
        ];
        let y = param_file_yaml(&p);
        assert_eq!(
            y,
            "wandb_version: 1\n\n\"lr\":\n  value: 1.0e-05\n\"act\":\n  value: \"relu\"\n\"n\":\n  value: 3\n\"h\":\n  value: [64, 0.5]\n"
        );
    }
}
