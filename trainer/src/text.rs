//! Text from users and clients as a terminal may show it — one helper for every name that
//! reaches a terminal (sweep, metric, parameter, class, file and worker names, a program's
//! output), in the coordinator's and the worker's commands alike.

use std::borrow::Cow;

/// Whether `c` may not reach a terminal as it is: control characters (escape sequences, line
/// breaks, C1 codes such as the 8-bit CSI) and the bidirectional controls that reorder what
/// follows them.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every unsafe character written as an escape (`\u{1b}`, `\n`, `\u{202e}`), so a
/// name can neither drive the terminal nor break a table's lines nor reorder what is shown.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            // `\n`, `\t` as Rust writes them; the rest as `\u{…}`.
            let e: String = c.escape_debug().collect();
            if e.chars().count() > 1 {
                out.push_str(&e);
            } else {
                out.extend(c.escape_unicode());
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`terminal_safe`] for text of several lines (an error, a program's output): line breaks
/// and tabs stay, every other unsafe character is escaped.
pub fn terminal_lines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| unsafe_char(c) && c != '\n' && c != '\t') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for (j, piece) in line.split('\t').enumerate() {
            if j > 0 {
                out.push('\t');
            }
            out.push_str(&terminal_safe(piece));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_c1_codes_and_bidi_overrides_and_leaves_the_rest() {
        assert!(matches!(
            terminal_safe("val/accuracy é 猫"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            terminal_safe("a\u{1b}]0;title\u{7}b\nc"),
            r"a\u{1b}]0;title\u{7}b\nc"
        );
        assert_eq!(terminal_safe("x\u{9b}2J"), r"x\u{9b}2J");
        assert_eq!(terminal_safe("cat\u{202e}god"), r"cat\u{202e}god");
        assert_eq!(terminal_safe("\u{2067}\u{200f}"), r"\u{2067}\u{200f}");
        assert_eq!(
            terminal_lines("one\n\ttwo \u{1b}[31mred\r"),
            "one\n\ttwo \\u{1b}[31mred\\r"
        );
        assert!(matches!(terminal_lines("a\nb\tc"), Cow::Borrowed(_)));
    }
}
