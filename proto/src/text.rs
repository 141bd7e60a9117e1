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
}
