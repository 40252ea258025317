//! What keeps a store file the store: one coordinator at a time (an exclusive lock), and a
//! watch on the file itself (deleted, replaced or truncated under a running coordinator).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The exclusive lock on a store, held for as long as this value lives.
///
/// It is a `flock` on `STORE.lock` beside the store: the kernel releases it when its holder
/// exits, however it exits (SIGKILL included), so a stale lock never needs clearing by hand.
/// The file holds a line naming the holder, for the message a second coordinator prints.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// The lock file's path for `store`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Why a store could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its description of itself.
    Held(String),
    /// The lock file could not be opened or locked.
    Io(std::io::Error),
}

impl StoreLock {
    /// Takes the lock on `store` without waiting.
    pub fn acquire(store: &Path) -> Result<StoreLock, LockError> {
        let path = lock_path(store);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(LockError::Io)?;
        // SAFETY: flock on a file descriptor this function owns; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held(if holder.is_empty() {
                    "a process that has not written its name yet".into()
                } else {
                    holder.chars().take(200).collect()
                }));
            }
            return Err(LockError::Io(err));
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "this host".into());
        let line = format!(
            "coordinator pid {} on {host}, since unix time {}\n",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        );
        file.set_len(0).map_err(LockError::Io)?;
        file.rewind().map_err(LockError::Io)?;
        file.write_all(line.as_bytes()).map_err(LockError::Io)?;
        Ok(StoreLock { _file: file })
    }
}

/// The identity of the store file when it was opened, checked against what the path and the
/// open file show now.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    /// The largest size seen: SQLite (without auto-vacuum, which the store does not enable)
    /// never shrinks its main file, so a smaller one was truncated by someone else.
    size: u64,
}

impl FileWatch {
    /// Starts watching the store file at `path` (which must exist).
    pub fn new(path: &Path) -> std::io::Result<FileWatch> {
        let file = File::open(path)?;
        let m = file.metadata()?;
        Ok(FileWatch {
            path: path.to_path_buf(),
            file,
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
        })
    }

    /// `None` while the path still names the file that was opened, at no smaller size; else
    /// what happened to it.
    pub fn check(&mut self) -> Option<String> {
        let open = match self.file.metadata() {
            Ok(m) => m,
            Err(e) => return Some(format!("cannot be examined any more ({e})")),
        };
        if open.nlink() == 0 {
            return Some("was deleted while the coordinator was using it".into());
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() != self.dev || m.ino() != self.ino => {
                return Some(
                    "was replaced by another file while the coordinator was using it".into(),
                )
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some("was moved away while the coordinator was using it".into())
            }
            Err(e) => return Some(format!("cannot be examined any more ({e})")),
        }
        if open.len() < self.size {
            return Some(format!(
                "was truncated from {} to {} bytes while the coordinator was using it",
                self.size,
                open.len()
            ));
        }
        self.size = open.len();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sweep-guard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("s.db")
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let p = temp("lock");
        let first = StoreLock::acquire(&p).unwrap();
        match StoreLock::acquire(&p) {
            Err(LockError::Held(h)) => {
                assert!(h.contains(&format!("pid {}", std::process::id())), "{h}")
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        StoreLock::acquire(&p).unwrap();
    }

    #[test]
    fn deletion_replacement_and_truncation_are_seen() {
        let p = temp("watch");
        std::fs::write(&p, vec![1u8; 8192]).unwrap();
        let mut w = FileWatch::new(&p).unwrap();
        assert_eq!(w.check(), None);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4096)
            .unwrap();
        assert!(w.check().unwrap().contains("truncated from 8192 to 4096"));

        let mut w = FileWatch::new(&p).unwrap();
        std::fs::rename(&p, p.with_extension("old")).unwrap();
        std::fs::write(&p, b"x").unwrap();
        assert!(w.check().unwrap().contains("replaced"));

        let mut w = FileWatch::new(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(w.check().unwrap().contains("deleted"));
    }
}
