//! A task's output: the first [`MAX_LOG_BYTES`] kept, the rest counted and said to be cut.

use volley_proto::wire::MAX_LOG_BYTES;

/// What a runtime printed during one task (or its init).
#[derive(Debug, Default)]
pub struct Log {
    kept: Vec<u8>,
    cut: u64,
}

impl Log {
    /// Appends output, keeping at most [`MAX_LOG_BYTES`].
    pub fn push(&mut self, bytes: &[u8]) {
        let room = MAX_LOG_BYTES.saturating_sub(self.kept.len());
        let take = room.min(bytes.len());
        self.kept.extend_from_slice(&bytes[..take]);
        self.cut += (bytes.len() - take) as u64;
    }

    /// The kept text so far, lossily decoded.
    pub fn peek(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }

    /// The log as text, ending with a line that says how much was cut, if anything was.
    pub fn finish(self) -> String {
        let mut text = String::from_utf8_lossy(&self.kept).into_owned();
        if self.cut > 0 {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[volley: output cut here; {} more bytes were written, the log keeps {MAX_LOG_BYTES}]\n",
                self.cut
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_over_the_bound_is_cut_with_a_mark() {
        let mut log = Log::default();
        log.push(b"hi\n");
        assert_eq!(Log { ..log }.finish(), "hi\n");
        let mut log = Log::default();
        log.push(&vec![b'x'; MAX_LOG_BYTES + 10]);
        log.push(b"more");
        let text = log.finish();
        assert!(text.starts_with(&"x".repeat(MAX_LOG_BYTES)));
        assert!(
            text.ends_with("[volley: output cut here; 14 more bytes were written, the log keeps 65536]\n"),
            "{}",
            &text[MAX_LOG_BYTES..]
        );
    }
}
