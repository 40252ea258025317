//! YAML read as W&B reads it: PyYAML's `safe_load` (YAML 1.1). A sweep config means what it
//! means to W&B, so plain scalars resolve by PyYAML's rules, not YAML 1.2's: `1e-3` (no dot)
//! and `1.0e5` (no exponent sign) are strings, `yes`/`no`/`on`/`off` are booleans but `y`/`n`
//! are strings, `017` is octal and `1:30` is 90, `.nan`/`.inf` are floats (kept as the text
//! Python prints for them, `nan`/`inf`, since JSON has no such numbers). A key given twice keeps
//! its last value, as PyYAML does, with a notice naming the key and line. Merge keys (`<<`)
//! work; aliases are expanded within a budget (alias bombs are refused).
//!
//! Events come from `granit_parser`, the YAML parser serde-saphyr is built on.

use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::ConfigError;

/// Most values (alias expansions included) one config may hold.
const MAX_NODES: usize = 1_000_000;
/// Deepest nesting.
const MAX_DEPTH: usize = 128;

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        /// Values inside, aliases expanded (for the budget).
        size: usize,
    },
    Map {
        map: Map<String, Value>,
        size: usize,
        /// The key waiting for its value, and its line.
        key: Option<(String, usize)>,
        anchor: usize,
        /// Mappings to merge (`<<`), in order.
        merges: Vec<Map<String, Value>>,
        merge_next: bool,
    },
}

fn err(span: Option<&Span>, message: impl Into<String>) -> ConfigError {
    let at = span.map_or(String::new(), |s| format!(" (line {})", s.start.line()));
    ConfigError::new("config", format!("{}{at}", message.into()))
}

/// The first line (1-based) whose indentation holds a tab, if any.
fn tab_indented(text: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            indent.contains('\t') && !l.trim_start().starts_with('#')
        })
        .map(|i| i + 1)
}

/// Reads one YAML document; `notices` gets what was accepted but is worth saying.
pub fn load(text: &str, notices: &mut Vec<String>) -> Result<Value, ConfigError> {
    let mut anchors: std::collections::HashMap<usize, (Value, usize)> = Default::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Value> = None;
    let mut nodes = 0usize;
    let mut documents = 0;
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| match tab_indented(text) {
            Some(line) => err(
                None,
                format!("not valid YAML: line {line} is indented with a tab; YAML indents with spaces only"),
            ),
            None => err(None, format!("not valid YAML: {e}")),
        })?;
        let (value, anchor, size) = match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(err(
                        Some(&span),
                        "expected one YAML document; this file has several (---)",
                    ));
                }
                continue;
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(
                        Some(&span),
                        format!("nested more than {MAX_DEPTH} levels deep"),
                    ));
                }
                stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq {
                        items: Vec::new(),
                        anchor,
                        size: 1,
                    }
                } else {
                    Frame::Map {
                        map: Map::new(),
                        size: 1,
                        key: None,
                        anchor,
                        merges: Vec::new(),
                        merge_next: false,
                    }
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    anchor,
                    size,
                }) => (Value::Array(items), anchor, size),
                _ => return Err(err(Some(&span), "unbalanced sequence")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    mut map,
                    anchor,
                    merges,
                    size,
                    ..
                }) => {
                    // Keys written in the mapping win over merged ones; earlier merges over later.
                    for m in merges {
                        for (k, v) in m {
                            map.entry(k).or_insert(v);
                        }
                    }
                    (Value::Object(map), anchor, size)
                }
                _ => return Err(err(Some(&span), "unbalanced mapping")),
            },
            Event::Alias(id) => {
                let Some((v, size)) = anchors.get(&id) else {
                    return Err(err(
                        Some(&span),
                        "an alias names no anchor defined before it",
                    ));
                };
                // Counted before it is copied: an alias bomb stops here.
                nodes += size;
                if nodes > MAX_NODES {
                    return Err(too_many(&span));
                }
                (v.clone(), 0, *size)
            }
            Event::Scalar(text, style, anchor, tag) => {
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(too_many(&span));
                }
                let v = scalar(&text, style, tag.as_deref(), &span)?;
                (v, anchor, 1)
            }
            _ => continue,
        };
        if anchor != 0 {
            anchors.insert(anchor, (value.clone(), size));
        }
        match stack.last_mut() {
            None => root = Some(value),
            Some(Frame::Seq {
                items, size: total, ..
            }) => {
                *total += size;
                items.push(value)
            }
            Some(Frame::Map {
                map,
                key,
                merges,
                merge_next,
                size: total,
                ..
            }) => match key.take() {
                None if *merge_next => {
                    *merge_next = false;
                    *total += size;
                    match value {
                        Value::Object(m) => merges.push(m),
                        Value::Array(list) if list.iter().all(Value::is_object) => {
                            merges.extend(list.into_iter().filter_map(|v| match v {
                                Value::Object(m) => Some(m),
                                _ => None,
                            }))
                        }
                        _ => {
                            return Err(err(
                                Some(&span),
                                "a merge key (<<) takes a mapping or a list of mappings",
                            ))
                        }
                    }
                }
                None => {
                    let k = match value {
                        Value::String(s) => s,
                        Value::Null => "null".into(),
                        Value::Bool(b) => if b { "true" } else { "false" }.into(),
                        Value::Number(n) => n.to_string(),
                        _ => {
                            return Err(err(
                                Some(&span),
                                "a key must be a name, not a list or a mapping",
                            ))
                        }
                    };
                    if k == "<<" {
                        *merge_next = true;
                    } else {
                        *key = Some((k, span.start.line()));
                    }
                }
                Some((k, line)) => {
                    *total += size;
                    if map.insert(k.clone(), value).is_some() {
                        notices.push(format!(
                            "key {k:?} is given more than once (line {line}); the last one is used, as W&B (PyYAML) does"
                        ));
                    }
                }
            },
        }
    }
    Ok(root.unwrap_or(Value::Null))
}

fn too_many(span: &Span) -> ConfigError {
    err(
        Some(span),
        format!("more than {MAX_NODES} values once aliases are expanded"),
    )
}

/// A scalar as PyYAML's SafeLoader resolves it.
/// A number as Python's `float()` reads it after PyYAML drops `_`: `1e-5`, `+2E3`, `inf`.
fn python_float(text: &str) -> Option<f64> {
    let t = text.replace('_', "");
    let t = t.trim();
    let digits = t.trim_start_matches(['+', '-']);
    let word = digits.to_ascii_lowercase();
    if matches!(word.as_str(), "inf" | "infinity" | "nan")
        || digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
    {
        t.parse::<f64>().ok()
    } else {
        None
    }
}

fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    span: &Span,
) -> Result<Value, ConfigError> {
    if let Some(tag) = tag {
        let suffix = if tag.is_yaml_core_schema() {
            tag.suffix()
        } else if tag.handle() == "!" && tag.suffix().is_empty() {
            "str"
        } else {
            return Err(err(
                Some(span),
                format!(
                    "unknown tag {}{}; W&B reads configs with PyYAML's safe loader, which has none such",
                    tag.handle(),
                    tag.suffix()
                ),
            ));
        };
        return match suffix {
            "str" => Ok(Value::String(text.to_string())),
            "null" => Ok(Value::Null),
            "bool" => boolean(text).map(Value::Bool).ok_or_else(|| {
                err(
                    Some(span),
                    format!("!!bool {text:?}: expected true, false, yes, no, on or off"),
                )
            }),
            "int" => {
                int(text).ok_or_else(|| err(Some(span), format!("!!int {text:?}: not an integer")))
            }
            // PyYAML makes a tagged float with Python's float(): `1e-5` needs no dot there.
            "float" => float(text)
                .or_else(|| int(text).and_then(|v| v.as_f64()).map(number))
                .or_else(|| python_float(text).map(number))
                .ok_or_else(|| err(Some(span), format!("!!float {text:?}: not a number"))),
            other => Err(err(Some(span), format!("unsupported tag !!{other}"))),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_string()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = boolean(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(v) = int(text) {
        return Ok(v);
    }
    if let Some(v) = float(text) {
        return Ok(v);
    }
    Ok(Value::String(text.to_string()))
}

fn boolean(t: &str) -> Option<bool> {
    match t {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(t: &str) -> (i128, &str) {
    match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    }
}

/// PyYAML's int: `0b1010`, `017` (octal), `0x1F`, `1_000`, `1:30` (sexagesimal), with a sign.
fn int(t: &str) -> Option<Value> {
    let (sign, body) = split_sign(t);
    if body.is_empty() || body.starts_with('_') {
        return None;
    }
    let digits = |s: &str, radix: u32| -> Option<i128> {
        let s: String = s.chars().filter(|c| *c != '_').collect();
        if s.is_empty() {
            return None;
        }
        i128::from_str_radix(&s, radix).ok()
    };
    let n = if let Some(b) = body.strip_prefix("0b") {
        digits(b, 2)?
    } else if let Some(h) = body.strip_prefix("0x") {
        digits(h, 16)?
    } else if body.contains(':') {
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| c.is_ascii_digit() && c != '0') {
            return None;
        }
        let mut n = digits(first, 10)?;
        for p in parts {
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let v: i128 = p.parse().ok()?;
            if v > 59 {
                return None;
            }
            n = n * 60 + v;
        }
        n
    } else if body.len() > 1 && body.starts_with('0') {
        if !body
            .bytes()
            .all(|b| (b'0'..=b'7').contains(&b) || b == b'_')
        {
            return None;
        }
        digits(&body[1..], 8)?
    } else {
        if !body.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
            return None;
        }
        digits(body, 10)?
    };
    let n = sign * n;
    // JSON numbers hold 64-bit integers; a larger one becomes the nearest float (W&B's Python
    // keeps every digit: docs/CONFIG.md says so).
    if let Ok(i) = i64::try_from(n) {
        Some(Value::from(i))
    } else if let Ok(u) = u64::try_from(n) {
        Some(Value::from(u))
    } else {
        Some(number(n as f64))
    }
}

/// PyYAML's float: a dot is required (`1.5`, `1.`, `.5`), an exponent needs a sign (`1.0e-5`),
/// `1:30.5` is sexagesimal, `.inf`/`.nan` in three cases.
fn float(t: &str) -> Option<Value> {
    let (sign, body) = split_sign(t);
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(number(sign as f64 * f64::INFINITY)),
        ".nan" | ".NaN" | ".NAN" if sign == 1 && !t.starts_with('+') => {
            return Some(number(f64::NAN))
        }
        _ => {}
    }
    if body.contains(':') {
        let (whole, frac) = body.split_once('.')?;
        let Some(Value::Number(n)) = int(whole) else {
            return None;
        };
        let f: f64 = format!("0.{}", frac.replace('_', "")).parse().ok()?;
        return Some(number(sign as f64 * (n.as_f64()? + f)));
    }
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac) = mantissa.split_once('.')?;
    let ok_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if !ok_digits(int_part) || !ok_digits(frac) || (int_part.is_empty() && frac.is_empty()) {
        return None;
    }
    if int_part.is_empty() && frac.starts_with('_') {
        return None;
    }
    if let Some(e) = exp {
        let (esign, edigits) = e.split_at(e.len().min(1));
        if !matches!(esign, "+" | "-")
            || edigits.is_empty()
            || !edigits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
    }
    let clean: String = t.chars().filter(|c| *c != '_').collect();
    clean.parse::<f64>().ok().map(number)
}

/// A float as JSON; NaN and the infinities, which JSON lacks, as the text Python's `str` gives
/// them (what a program receives for them from W&B).
fn number(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("nan".into()),
        None if f > 0.0 => Value::String("inf".into()),
        None => Value::String("-inf".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn y(text: &str) -> Value {
        load(text, &mut Vec::new()).unwrap()
    }

    #[test]
    fn scalars_resolve_as_pyyaml_does() {
        let v = y("a: 1e-3\nb: 1.0e-3\nc: 1.0e5\nd: 0.001\ne: y\nf: yes\ng: Off\nh: 017\ni: 0x1F\n\
                   j: 1_000\nk: 1:30\nl: .nan\nm: -.inf\nn: ~\no: '1.5'\np: !!float 3\nq: 1.\nr: .5\ns: True\nt: 1e5\n");
        assert_eq!(
            v,
            json!({"a": "1e-3", "b": 0.001, "c": "1.0e5", "d": 0.001, "e": "y", "f": true, "g": false,
                   "h": 15, "i": 31, "j": 1000, "k": 90, "l": "nan", "m": "-inf", "n": null, "o": "1.5",
                   "p": 3.0, "q": 1.0, "r": 0.5, "s": true, "t": "1e5"})
        );
        // A tag makes PyYAML read the text with Python's float(), which needs no dot.
        let v = y("a: !!float \"1e-5\"\nb: !!float 2E3\nc: !!float '-1_0.5'\n");
        assert_eq!(v, json!({"a": 1e-5, "b": 2000.0, "c": -10.5}));
        // Integers: every digit up to 64 bits unsigned, the nearest float beyond.
        let v = y("a: 9223372036854775808\nb: 18446744073709551615\nc: 100000000000000000000\nd: -9223372036854775808\n");
        assert_eq!(v["a"].as_u64(), Some(9_223_372_036_854_775_808));
        assert_eq!(v["b"].to_string(), "18446744073709551615");
        assert_eq!(v["c"].as_f64(), Some(1e20));
        assert_eq!(v["d"].as_i64(), Some(i64::MIN));
        let mut n = Vec::new();
        assert!(load("a: !!float abc\n", &mut n)
            .unwrap_err()
            .message
            .contains("not a number"));
    }

    #[test]
    fn duplicate_keys_keep_the_last_with_a_notice() {
        let mut n = Vec::new();
        let v = load(
            "metric: {name: a}\nmethod: grid\nmetric:\n  name: b\n",
            &mut n,
        )
        .unwrap();
        assert_eq!(v["metric"]["name"], "b");
        assert_eq!(n.len(), 1);
        assert!(
            n[0].contains("key \"metric\" is given more than once (line 3)"),
            "{n:?}"
        );
    }

    #[test]
    fn merges_aliases_and_limits() {
        let v = y("base: &b {lr: 0.1, bs: 32}\nrun:\n  <<: *b\n  bs: 64\nlist: [*b, *b]\n");
        assert_eq!(v["run"], json!({"lr": 0.1, "bs": 64}));
        assert_eq!(v["list"][1]["bs"], 32);
        assert!(load("a: 1\n---\nb: 2\n", &mut Vec::new()).is_err());
        assert!(load("a: !!python/object:os.system x\n", &mut Vec::new())
            .unwrap_err()
            .message
            .contains("unknown tag"));
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(load(&deep, &mut Vec::new())
            .unwrap_err()
            .message
            .contains("levels deep"));
    }
}
