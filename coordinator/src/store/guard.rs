//! What keeps a store file the store: one coordinator at a time (an exclusive lock on the
//! database file itself), one name for it (no hard links: SQLite keeps its write-ahead log
//! beside the name it was given), and a watch on the file (deleted, replaced or truncated
//! under a running coordinator).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::clock::utc;

/// The exclusive lock on a store, held for as long as this value lives.
///
/// It is a `flock` on the database file itself, so it holds for that file whatever path
/// reaches it (a symlink, `./s.db`, a bind mount); the kernel releases it when its holder
/// exits, however it exits (SIGKILL included), so a stale lock never needs clearing by hand.
/// SQLite's own locks are POSIX record locks, which a `flock` neither takes nor disturbs.
/// `STORE.lock` beside the file's real path holds a line naming the holder, for the message
/// a second coordinator prints.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    /// The database file's path with every symlink resolved: the one name SQLite is given.
    pub real: PathBuf,
}

/// The holder's description file for `store` (beside the path given).
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
    /// The file has more than one name (hard links).
    Links(u64),
    /// The database file could not be opened or locked.
    Io(std::io::Error),
}

impl StoreLock {
    /// Takes the lock on `store` (creating an empty database file if there is none) without
    /// waiting.
    pub fn acquire(store: &Path) -> Result<StoreLock, LockError> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(store)
            .map_err(LockError::Io)?;
        let real = std::fs::canonicalize(store).map_err(LockError::Io)?;
        // SAFETY: flock on a file descriptor this function owns; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let m = file.metadata().map_err(LockError::Io)?;
                return Err(LockError::Held(holder(&real, m.ino())));
            }
            return Err(LockError::Io(err));
        }
        // Checked under the lock: a second name could only have been made by hand, and a
        // coordinator that opened the file by it would keep a write-ahead log of its own.
        let links = file.metadata().map_err(LockError::Io)?.nlink();
        if links > 1 {
            return Err(LockError::Links(links));
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "this host".into());
        let line = format!(
            "coordinator pid {} on {host}, since {}\n",
            std::process::id(),
            utc(std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64))
        );
        // The description is a courtesy: a store in a directory this process may not write
        // to is still locked by the flock above.
        let _ = std::fs::write(lock_path(&real), line);
        Ok(StoreLock { _file: file, real })
    }
}

/// Who holds the flock on inode `ino`: the process the kernel names in `/proc/locks`, with the
/// description it wrote beside the real path when that description is its own.
fn holder(real: &Path, ino: u64) -> String {
    let pid = std::fs::read_to_string("/proc/locks")
        .ok()
        .and_then(|t| flock_holder(&t, ino));
    let mut described = String::new();
    if let Ok(mut f) = File::open(lock_path(real)) {
        let _ = Read::by_ref(&mut f)
            .take(4096)
            .read_to_string(&mut described);
    }
    let described: String = described.trim().chars().take(200).collect();
    match pid {
        Some(pid) if !described.contains(&format!("pid {pid} ")) => {
            // Reached by another name (a hard link, a bind mount): the kernel's name for it.
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().chars().take(32).collect::<String>())
                .unwrap_or_default();
            let comm = if comm.is_empty() {
                "process".into()
            } else {
                comm
            };
            format!("{comm} pid {pid}")
        }
        None if described.is_empty() => "process".into(),
        _ => described,
    }
}

/// The pid holding a `FLOCK` on inode `ino`, from the text of `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 4242 08:02:131073 0 EOF`).
fn flock_holder(locks: &str, ino: u64) -> Option<u32> {
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (kind, pid, id) = (f.get(1)?, f.get(4)?, f.get(5)?);
        if *kind != "FLOCK" || id.rsplit(':').next()?.parse::<u64>().ok()? != ino {
            return None;
        }
        pid.parse().ok()
    })
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

    #[test]
    fn a_holder_says_since_when_as_a_date() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_527_718), "2026-12-06 03:28:38 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

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
    fn the_lock_holds_for_the_file_whatever_path_reaches_it() {
        let p = temp("alias");
        let dir = p.parent().unwrap().to_path_buf();
        let first = StoreLock::acquire(&p).unwrap();
        assert_eq!(first.real, std::fs::canonicalize(&p).unwrap());
        let link = dir.join("link.db");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let sub = dir.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        let dotted = sub.join("..").join(".").join("s.db");
        let hard = dir.join("hard.db");
        std::fs::hard_link(&p, &hard).unwrap();
        for alias in [&link, &dotted, &hard] {
            match StoreLock::acquire(alias) {
                Err(LockError::Held(h)) => {
                    assert!(h.contains(&format!("pid {}", std::process::id())), "{h}")
                }
                other => panic!("{}: expected Held, got {other:?}", alias.display()),
            }
        }
        drop(first);
        // With the holder gone, a file with two names is still refused, by either name.
        for name in [&p, &hard] {
            match StoreLock::acquire(name) {
                Err(LockError::Links(2)) => {}
                other => panic!("{}: expected Links(2), got {other:?}", name.display()),
            }
        }
        std::fs::remove_file(&hard).unwrap();
        let by_link = StoreLock::acquire(&link).unwrap();
        assert_eq!(by_link.real, std::fs::canonicalize(&p).unwrap());
    }

    #[test]
    fn the_flock_holder_is_read_from_proc_locks() {
        let text = "1: POSIX  ADVISORY  WRITE 11 08:02:77 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4242 08:02:131073 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 5151 00:2d:77 0 EOF\n";
        assert_eq!(flock_holder(text, 131073), Some(4242));
        assert_eq!(flock_holder(text, 77), Some(5151));
        assert_eq!(flock_holder(text, 9), None);
        assert_eq!(flock_holder("garbage\n\n1:", 9), None);
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
