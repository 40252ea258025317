//! A confusion matrix as the terminal shows it (`worker train`, `coordinator trial`).

/// The longest class name shown, in characters; a longer one is cut with `…`.
const NAME_CHARS: usize = 64;

/// The confusion matrix as a text table with class names and per-class accuracy. Bounded
/// whatever it is given: names are made safe for a terminal and long ones cut, counts add up without overflow, a short row
/// shows what it has.
pub fn format(classes: &[String], m: &[Vec<u64>]) -> String {
    let names: Vec<String> = classes
        .iter()
        .map(|c| {
            let c = crate::text::terminal_safe(c);
            if c.chars().count() > NAME_CHARS {
                c.chars().take(NAME_CHARS - 1).chain(['…']).collect()
            } else {
                c.into_owned()
            }
        })
        .collect();
    let name_w = names.iter().map(|c| c.chars().count()).max().unwrap_or(0) + 4;
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
    for (i, (c, row)) in names.iter().zip(m).enumerate() {
        // u128: a row of u64 counts cannot overflow it.
        let total: u128 = row.iter().map(|&v| u128::from(v)).sum();
        let label = format!("{i:>2} {c}");
        s.push_str(&format!("{label:<name_w$}"));
        for v in row {
            s.push_str(&format!("{v:>cell_w$}"));
        }
        let right = row.get(i).map_or(0, |&v| u128::from(v));
        let acc = if total == 0 {
            0.0
        } else {
            right as f64 / total as f64
        };
        s.push_str(&format!("   {:>7.1}%\n", 100.0 * acc));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_counts_long_names_and_short_rows_are_shown_not_trusted() {
        let classes = vec!["a".to_string(), "b".repeat(100_000)];
        let m = vec![vec![u64::MAX, u64::MAX], vec![3]];
        let s = format(&classes, &m);
        // [MAX, MAX]: half right, not 100% after an overflow.
        assert!(s.contains("   50.0%"), "{s}");
        assert!(
            s.contains(&format!("{}…", "b".repeat(NAME_CHARS - 1))),
            "{s}"
        );
        assert!(s.len() < 2_000, "{}", s.len());
        // A row shorter than the classes: its diagonal is missing, not a panic.
        assert!(s.lines().last().unwrap().ends_with("0.0%"), "{s}");
    }
}
