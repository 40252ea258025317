//! What the best trial's program logged besides numbers (`wandb.Image`, `wandb.Table`), in
//! the one-file report: its `media/_index.jsonl` (written by our `wandb` module, read here as
//! the program's own untrusted writing) names the files; the last step of each key is shown,
//! images inline as data URIs, tables as their first rows. Bounded: at most [`MAX_IMAGES`]
//! images, [`MAX_TABLES`] tables and [`MAX_BYTES`] in all.

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::Value;

/// The index of a trial's media among its files.
pub const INDEX: &str = "media/_index.jsonl";
/// Most images a report shows.
pub const MAX_IMAGES: usize = 24;
/// Most tables a report shows.
pub const MAX_TABLES: usize = 4;
/// Rows shown of each table.
pub const TABLE_ROWS: usize = 20;
/// Most bytes of media one report embeds.
pub const MAX_BYTES: usize = 8 << 20;

/// One logged image or table to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    /// The key it was logged under.
    pub key: String,
    /// W&B's `_step` it was logged at.
    pub step: u64,
    /// Its file, among the trial's.
    pub path: String,
    /// Its caption (images).
    pub caption: Option<String>,
    /// Its bytes, once read.
    pub data: Vec<u8>,
}

impl Media {
    fn is_table(&self) -> bool {
        self.path.ends_with(".table.json")
    }
}

/// The media to show from an index (`listed`: the trial's kept files): for each key, what it
/// logged at its last step, images and tables only, within the counts.
pub fn choose(index: &[u8], listed: &[String]) -> Vec<Media> {
    let mut last: std::collections::BTreeMap<String, (u64, Vec<Media>)> = Default::default();
    for line in String::from_utf8_lossy(index).lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(key), Some(step), Some(kind), Some(path)) = (
            e["key"].as_str(),
            e["step"].as_u64(),
            e["type"].as_str(),
            e["path"].as_str(),
        ) else {
            continue;
        };
        if !matches!(kind, "image" | "table") || !listed.iter().any(|f| f == path) {
            continue;
        }
        let m = Media {
            key: key.to_string(),
            step,
            path: path.to_string(),
            caption: e["caption"].as_str().map(str::to_string),
            data: Vec::new(),
        };
        let slot = last.entry(key.to_string()).or_insert((step, Vec::new()));
        if step > slot.0 {
            *slot = (step, Vec::new());
        }
        if step == slot.0 {
            slot.1.push(m);
        }
    }
    let (mut images, mut tables) = (0, 0);
    last.into_values()
        .flat_map(|(_, list)| list)
        .filter(|m| {
            let n = if m.is_table() {
                &mut tables
            } else {
                &mut images
            };
            *n += 1;
            *n <= if m.is_table() { MAX_TABLES } else { MAX_IMAGES }
        })
        .collect()
}

fn esc(s: &str) -> String {
    super::esc(s)
}

/// The report's section for trial `trial`'s media (empty when there are none).
pub fn section(trial: u64, media: &[Media]) -> String {
    let shown: Vec<&Media> = media.iter().filter(|m| !m.data.is_empty()).collect();
    if shown.is_empty() {
        return String::new();
    }
    let mut h =
        format!("<h2>Media of the best trial (trial {trial}, each key at its last step)</h2>\n");
    let mut key = "";
    for m in shown {
        if m.key != key {
            key = &m.key;
            // Steps as the curves count them: W&B's `_step` + 1.
            let _ = writeln!(h, "<h3>{} (step {})</h3>", esc(key), m.step + 1);
        }
        if m.is_table() {
            h.push_str(&table(&m.data));
            continue;
        }
        let mime = match m.path.rsplit('.').next() {
            Some("jpg") => "image/jpeg",
            Some("gif") => "image/gif",
            _ => "image/png",
        };
        let _ = writeln!(
            h,
            "<figure style=\"display: inline-block\"><img style=\"max-width: 280px; min-width: 56px; image-rendering: pixelated\" alt=\"{alt}\" src=\"data:{mime};base64,{b64}\">{cap}</figure>",
            alt = esc(&m.key),
            b64 = base64::engine::general_purpose::STANDARD.encode(&m.data),
            cap = m.caption.as_deref().map_or(String::new(), |c| format!(
                "<figcaption>{}</figcaption>",
                esc(c)
            )),
        );
    }
    h
}

/// A logged table's first rows (`{"columns": [...], "data": [[...]]}`), cells as text.
fn table(data: &[u8]) -> String {
    let Ok(t) = serde_json::from_slice::<Value>(data) else {
        return "<p>(a table that is not JSON)</p>\n".into();
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let columns: Vec<String> = t["columns"]
        .as_array()
        .map(|c| c.iter().map(text).collect())
        .unwrap_or_default();
    let rows = t["data"].as_array().cloned().unwrap_or_default();
    let mut h = String::from("<div style=\"overflow-x: auto\"><table>\n<tr>");
    for c in &columns {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>\n");
    for r in rows.iter().take(TABLE_ROWS) {
        h.push_str("<tr>");
        for v in r.as_array().map(Vec::as_slice).unwrap_or_default() {
            let _ = write!(h, "<td>{}</td>", esc(&text(v)));
        }
        h.push_str("</tr>\n");
    }
    let _ = writeln!(
        h,
        "</table></div>\n<p>{} rows{}</p>",
        rows.len(),
        if rows.len() > TABLE_ROWS {
            format!(", the first {TABLE_ROWS} shown")
        } else {
            String::new()
        }
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_step_of_each_key_is_chosen_from_listed_files_only() {
        let index =
            br#"{"key": "grid", "step": 0, "type": "image", "path": "media/images/grid_0_1.png"}
{"key": "grid", "step": 3, "type": "image", "path": "media/images/grid_3_2.png", "caption": "<b>"}
{"key": "grid", "step": 3, "type": "image", "path": "media/images/grid_3_3.png"}
{"key": "t", "step": 1, "type": "table", "path": "media/table/t_1_4.table.json"}
{"key": "page", "step": 1, "type": "html", "path": "media/html/page_1_5.html"}
{"key": "ghost", "step": 9, "type": "image", "path": "/etc/passwd"}
not json"#;
        let listed: Vec<String> = [
            "media/images/grid_0_1.png",
            "media/images/grid_3_2.png",
            "media/images/grid_3_3.png",
            "media/table/t_1_4.table.json",
            "media/html/page_1_5.html",
        ]
        .map(String::from)
        .to_vec();
        let got: Vec<String> = choose(index, &listed).into_iter().map(|m| m.path).collect();
        assert_eq!(
            got,
            [
                "media/images/grid_3_2.png",
                "media/images/grid_3_3.png",
                "media/table/t_1_4.table.json"
            ]
        );
        let mut media = choose(index, &listed);
        media[0].data = b"\x89PNG".to_vec();
        media[2].data = br#"{"columns": ["a", "<i>"], "data": [[1, "<x>"]]}"#.to_vec();
        let html = section(7, &media);
        assert!(html.contains("trial 7"), "{html}");
        assert!(html.contains("data:image/png;base64,iVBORw=="), "{html}");
        assert!(
            html.contains("<figcaption>&lt;b&gt;</figcaption>"),
            "{html}"
        );
        assert!(
            html.contains("<th>&lt;i&gt;</th>") && html.contains("<td>&lt;x&gt;</td>"),
            "{html}"
        );
        assert_eq!(
            html.matches("<img").count(),
            1,
            "the image never read is left out"
        );
    }
}
