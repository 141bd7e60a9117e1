//! Code a worker was sent, one file per digest, checked against its digest before use.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use volley_proto::function::user::MAX_CODE_BYTES;
use volley_proto::function::{CodeDigest, UserCode};

/// Digests being received at once at most: a dispatcher sends one at a time, so more
/// means pieces went astray, and the oldest are dropped.
const MAX_PARTIAL: usize = 8;

/// Why code could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// The bytes do not hash to the digest they came under.
    #[error("code for {digest} hashed to {got}")]
    Digest {
        /// Announced.
        digest: CodeDigest,
        /// Computed.
        got: CodeDigest,
    },
    /// A piece did not continue the code where the last one ended, or its size is wrong.
    #[error("code for {0} arrived out of order or over its announced size; dropped")]
    Order(CodeDigest),
    /// More than [`MAX_CODE_BYTES`].
    #[error("code of {0} bytes exceeds the limit of {MAX_CODE_BYTES}")]
    TooLarge(u64),
    /// The disk.
    #[error("cannot write code to {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

struct Partial {
    total: u64,
    data: Vec<u8>,
}

#[derive(Default)]
struct State {
    ready: HashMap<CodeDigest, PathBuf>,
    partial: Vec<(CodeDigest, Partial)>,
}

/// The worker's code files, under a directory of its own.
pub struct CodeCache {
    dir: PathBuf,
    state: Mutex<State>,
}

impl CodeCache {
    /// A cache writing under `dir` (created).
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        private_dir(&dir)?;
        Ok(Self {
            dir,
            state: Mutex::new(State::default()),
        })
    }

    /// Whether the code is here.
    pub fn has(&self, digest: &CodeDigest) -> bool {
        self.state.lock().ready.contains_key(digest)
    }

    /// The code's file, named with its format's extension (runtimes read it: `.py`
    /// imports, `.zip` goes on `sys.path`); `None` if the code never arrived.
    pub fn path(&self, code: &UserCode) -> Option<PathBuf> {
        let base = self.state.lock().ready.get(&code.digest)?.clone();
        let named = base.with_extension(&code.format);
        if !named.exists() {
            // A hard link: one copy on disk whatever formats name it.
            if let Err(e) = std::fs::hard_link(&base, &named) {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return None;
                }
            }
        }
        Some(named)
    }

    /// Keeps whole code received at once (the local pool's way).
    pub fn insert(&self, digest: CodeDigest, code: &[u8]) -> Result<PathBuf, CodeError> {
        if let Some(p) = self.state.lock().ready.get(&digest) {
            return Ok(p.clone());
        }
        let got = CodeDigest::of(code);
        if got != digest {
            return Err(CodeError::Digest { digest, got });
        }
        let path = self.dir.join(digest.to_string());
        write_file(&path, code).map_err(|source| CodeError::Io {
            path: path.clone(),
            source,
        })?;
        self.state.lock().ready.insert(digest, path.clone());
        Ok(path)
    }

    /// Keeps `file`, which holds the code of `digest`, without reading it: a hard link
    /// (a copy, checked, across file systems, or when the file is not readable and
    /// executable by its owner as the cache's own files are). For the provisioner's file,
    /// written by the worker's parent as the same user from code whose digest the store
    /// checked: a large native function is not hashed again at every cold start.
    pub fn adopt(&self, digest: CodeDigest, file: &Path) -> Result<PathBuf, CodeError> {
        if let Some(p) = self.state.lock().ready.get(&digest) {
            return Ok(p.clone());
        }
        let path = self.dir.join(digest.to_string());
        let io = |source| CodeError::Io {
            path: path.clone(),
            source,
        };
        use std::os::unix::fs::PermissionsExt;
        let runnable = std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o500 == 0o500);
        let linked = if runnable {
            std::fs::hard_link(file, &path)
        } else {
            Err(std::io::ErrorKind::PermissionDenied.into())
        };
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(_) => {
                let bytes = std::fs::read(file).map_err(io)?;
                return self.insert(digest, &bytes);
            }
        }
        self.state.lock().ready.insert(digest, path.clone());
        Ok(path)
    }

    /// Takes one piece of code; returns the file once the last piece made it whole.
    pub fn piece(
        &self,
        digest: CodeDigest,
        total: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<Option<PathBuf>, CodeError> {
        if total > MAX_CODE_BYTES as u64 {
            return Err(CodeError::TooLarge(total));
        }
        let whole = {
            let mut state = self.state.lock();
            if state.ready.contains_key(&digest) {
                return Ok(None);
            }
            let at = state.partial.iter().position(|(d, _)| *d == digest);
            let mut partial = match (at, offset) {
                (Some(i), _) => state.partial.remove(i).1,
                (None, 0) => Partial {
                    total,
                    data: Vec::with_capacity(total.min(1 << 20) as usize),
                },
                (None, _) => return Err(CodeError::Order(digest)),
            };
            let end = offset + data.len() as u64;
            if partial.total != total || partial.data.len() as u64 != offset || end > total {
                return Err(CodeError::Order(digest));
            }
            partial.data.extend_from_slice(data);
            if end < total {
                if state.partial.len() >= MAX_PARTIAL {
                    state.partial.remove(0);
                }
                state.partial.push((digest, partial));
                return Ok(None);
            }
            partial.data
        };
        self.insert(digest, &whole).map(Some)
    }
}

/// Writes the file whole, then renames it into place, so a runtime never reads half.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("partial");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o500))?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Makes `dir` a directory only this user may enter: one `mkdir` with its mode (a worker
/// starts with a few of these on every cold start), its parents first if they are
/// missing, or, if it is there already (left by an earlier process of this pid), its
/// mode set.
pub(super) fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mkdir = || std::fs::DirBuilder::new().mode(0o700).create(dir);
    match mkdir() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match dir.parent() {
            Some(parent) => std::fs::create_dir_all(parent).and_then(|()| mkdir()),
            None => Err(e),
        },
        done => done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(digest: CodeDigest) -> UserCode {
        UserCode {
            function: "f".into(),
            language: volley_proto::function::Language::Python,
            handler: String::new(),
            format: "py".into(),
            digest,
            size: 0,
            timeout_ms: 1000,
            memory_mb: 64,
        }
    }

    #[test]
    fn pieces_in_order_make_a_checked_file_and_anything_else_is_refused() {
        let dir = std::env::temp_dir().join(format!("volley-cache-test-{}", std::process::id()));
        let cache = CodeCache::new(dir.clone()).unwrap();
        let bytes = b"def handle(e):\n    return e\n".to_vec();
        let digest = CodeDigest::of(&bytes);
        let total = bytes.len() as u64;
        assert!(
            cache.piece(digest, total, 5, &bytes[5..]).is_err(),
            "a first piece must start at 0"
        );
        assert!(cache.piece(digest, total, 0, &bytes[..5]).unwrap().is_none());
        assert!(cache.piece(digest, total, 9, &bytes[9..]).is_err(), "a gap is refused");
        assert!(cache.piece(digest, total, 0, &bytes[..5]).unwrap().is_none());
        assert!(cache.piece(digest, total, 5, &bytes[5..]).unwrap().is_some());
        let path = cache.path(&code(digest)).unwrap();
        assert!(path.to_string_lossy().ends_with(".py"));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let wrong = CodeDigest::of(b"other");
        assert!(matches!(cache.insert(wrong, &bytes), Err(CodeError::Digest { .. })));
        assert!(cache.path(&code(wrong)).is_none());
        assert!(matches!(
            cache.piece(wrong, MAX_CODE_BYTES as u64 + 1, 0, b""),
            Err(CodeError::TooLarge(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_adopted_file_its_owner_cannot_run_is_copied_runnable_and_left_as_it_was() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("volley-cache-adopt-{}", std::process::id()));
        let cache = CodeCache::new(dir.join("cache")).unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let digest = CodeDigest::of(b"#!/bin/sh\n");
        let kept = cache.adopt(digest, &plain).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&kept), 0o500, "the cache's copy runs");
        assert_eq!(mode(&plain), 0o644, "the caller's file is not changed");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
