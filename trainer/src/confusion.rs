//! A confusion matrix as the terminal shows it (`worker train`, `coordinator trial`).

/// The confusion matrix as a text table with class names and per-class accuracy.
pub fn format(classes: &[String], m: &[Vec<u64>]) -> String {
    let name_w = classes.iter().map(|c| c.chars().count()).max().unwrap_or(0) + 4;
    let cell_w = m
        .iter()
        .flatten()
        .map(|v| v.to_string().len())
        .max()
        .unwrap_or(1)
        .max(classes.len().saturating_sub(1).to_string().len())
        + 1;
    let mut s = format!(
        "confusion matrix (rows: true class, columns: predicted class)\n{:name_w$}",
        ""
    );
    for j in 0..classes.len() {
        s.push_str(&format!("{j:>cell_w$}"));
    }
    s.push_str("   accuracy\n");
    for (i, (c, row)) in classes.iter().zip(m).enumerate() {
        let total: u64 = row.iter().sum();
        let label = format!("{i:>2} {c}");
        s.push_str(&format!("{label:<name_w$}"));
        for v in row {
            s.push_str(&format!("{v:>cell_w$}"));
        }
        let acc = if total == 0 {
            0.0
        } else {
            row[i] as f64 / total as f64
        };
        s.push_str(&format!("   {:>7.1}%\n", 100.0 * acc));
    }
    s
}
