//! `~/.cache/volley`: programs a worker prepares once per user and host (the Python
//! runtime's module with its bytecode, the Java runtime's classes), found again by a key
//! of what they were made from.

use std::path::PathBuf;

/// A key for a program's text, computed when the worker is compiled (FNV-1a, 64 bits).
/// Hashing the Python runtime's 17 KB with SHA-256 at every worker start took 0.9 M
/// instructions, 40 % of a worker's whole start (callgrind). A key only names a
/// directory: what is found there is compared with what is wanted, or belongs to this
/// user alone.
pub(super) const fn program_key(text: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < text.len() {
        hash ^= text[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `~/.cache/volley/<name>-<key>` (or under `XDG_CACHE_HOME`). `~/.cache/volley` must be
/// this user's and private; `None` without a home.
pub(super) fn user_cache(name: &str, key: u64) -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let root = base.join("volley");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root)
        .ok()?;
    let meta = std::fs::metadata(&root).ok()?;
    if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
        return None;
    }
    Some(root.join(format!("{name}-{key:016x}")))
}

/// `text` as `file` in `~/.cache/volley/<name>-<key>` (`key`: [`program_key`] of `text`,
/// computed at compile time), written whole (by a rename) unless it is there already; the
/// file's path, or `None` without a cache to keep it in.
pub(super) fn kept(name: &str, key: u64, file: &str, text: &str) -> Option<PathBuf> {
    let dir = user_cache(name, key)?;
    let path = dir.join(file);
    if std::fs::read(&path).is_ok_and(|b| b == text.as_bytes()) {
        return Some(path);
    }
    let partial = dir.join(format!("{file}.{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&partial, text))
        .and_then(|()| std::fs::rename(&partial, &path))
        .ok()
        .map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::program_key;

    #[test]
    fn keys_tell_texts_apart_and_are_stable() {
        // FNV-1a's published test vectors.
        assert_eq!(program_key(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(program_key(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(program_key(b"import sys\n"), program_key(b"import sys \n"));
    }
}
