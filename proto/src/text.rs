//! Short, safe forms of untrusted text for error messages and logs: a 120 KB argument
//! echoed back in an error helps nobody and floods every log it reaches.

/// Characters of user input an error message quotes before cutting it.
pub const QUOTE_CHARS: usize = 64;

/// `text` cut to at most `max_chars` characters; a cut text ends with `…` and says how
/// long the whole was, so the reader knows it was cut.
pub fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes in all)", &text[..end], text.len()),
    }
}

/// [`clip`] at [`QUOTE_CHARS`], the length every error message uses.
pub fn quote(text: &str) -> String {
    clip(text, QUOTE_CHARS)
}

/// `text` clipped to `max_chars` with control characters escaped (`\n`, `\u{1b}`…), for
/// anything a peer says that reaches a log line: a name with a newline in it cannot forge
/// a second line, and an escape sequence cannot repaint the operator's terminal.
pub fn escaped(text: &str, max_chars: usize) -> String {
    let clipped = clip(text, max_chars);
    if !clipped.chars().any(char::is_control) {
        return clipped;
    }
    let mut out = String::with_capacity(clipped.len() + 8);
    for c in clipped.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(clip("sleep:100", 64), "sleep:100");
        assert_eq!(clip("", 3), "");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_so() {
        let long = "é".repeat(100);
        let c = clip(&long, 10);
        assert!(c.starts_with(&"é".repeat(10)));
        assert!(c.ends_with("… (200 bytes in all)"), "{c}");
        assert!(quote(&"x".repeat(120_000)).len() < 100);
    }

    #[test]
    fn control_characters_cannot_forge_log_lines() {
        assert_eq!(escaped("w1", 64), "w1");
        assert_eq!(escaped("w1\nINFO forged\x1b[2J", 64), "w1\\nINFO forged\\u{1b}[2J");
        assert_eq!(escaped("ünï", 64), "ünï");
        assert!(escaped(&"\n".repeat(10_000), 10).len() < 60);
    }
}
