//! Writing downloaded files into the directory a user named with `--out`, safely: nothing
//! is written outside it (no symlink at or below it is followed, each step is opened relative
//! to the one before with `O_NOFOLLOW`), nothing there is replaced without `--force`, and no
//! path under a dot-directory or dot-file (`.git/`, `.hg/`, `.envrc`, …: places where tools
//! run what they find) is written without `--dotfiles`. Every refusal names the file.
//!
//! The files of one download are all checked before the first is written, so a refused
//! download writes nothing; the writes themselves check again (a symlink made in between is
//! still not followed).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the user allowed for this download.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Allow {
    /// Replace files that are already there (`--force`).
    pub(super) overwrite: bool,
    /// Write paths with a part that starts with a dot (`--dotfiles`).
    pub(super) dotfiles: bool,
}

/// An open `--out` directory.
#[derive(Debug)]
pub(super) struct OutDir {
    dir: OwnedFd,
    path: PathBuf,
    allow: Allow,
}

/// What stands at a name inside a directory, looked at without following it.
enum Entry {
    Missing,
    Dir,
    File,
    Symlink,
    Other,
}

fn cstr(name: &str) -> Result<CString, String> {
    CString::new(name).map_err(|_| "holds a NUL byte".to_string())
}

fn entry(dir: &OwnedFd, name: &CString) -> std::io::Result<Entry> {
    // SAFETY: fstatat writes into the zeroed stat buffer it is given; `name` is a valid C
    // string and `dir` an open descriptor for the duration of the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::NotFound {
            Ok(Entry::Missing)
        } else {
            Err(e)
        };
    }
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Entry::Dir,
        libc::S_IFREG => Entry::File,
        libc::S_IFLNK => Entry::Symlink,
        _ => Entry::Other,
    })
}

fn open_at(dir: &OwnedFd, name: &CString, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: openat with a valid C string and an open descriptor; the returned descriptor
    // is owned by the OwnedFd made from it only when it is valid.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o666 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl OutDir {
    /// Creates `path` if needed (its parents are the user's own path) and opens it; refuses
    /// it if it is a symlink, as one left in a shared directory could point anywhere.
    pub(super) fn open(path: &Path, allow: Allow) -> Result<OutDir, String> {
        let shown = path.display();
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                return Err(format!(
                    "--out {shown} is a symlink (to {to}); downloads never follow one: give the directory itself"
                ));
            }
            Ok(m) if !m.is_dir() => {
                return Err(format!("--out {shown} exists and is not a directory"))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path)
                    .map_err(|e| format!("--out {shown}: cannot create it: {e}"))?;
            }
            Err(e) => return Err(format!("--out {shown}: {e}")),
        }
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("--out {shown}: holds a NUL byte"))?;
        // SAFETY: open with a valid C string; the descriptor is owned below only if valid.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(format!(
                "--out {shown}: cannot open it: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(OutDir {
            // SAFETY: `fd` was just returned by open and is owned by nobody else.
            dir: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
            allow,
        })
    }

    /// The path `rel` (parts separated by `/`) will have.
    pub(super) fn path_of(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Refuses `rel` if writing it would leave the directory, follow a symlink, replace a file
    /// without `--force`, or write under a dot-name without `--dotfiles`.
    pub(super) fn check(&self, rel: &str) -> Result<(), String> {
        self.walk(rel, false).map(|_| ())
    }

    /// Checks every path first, so that a refused download writes nothing; all refusals at
    /// once, one line each.
    pub(super) fn check_all<'a>(
        &self,
        rels: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), String> {
        let refused: Vec<String> = rels
            .into_iter()
            .filter_map(|r| self.check(r).err())
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "nothing was written to {}:\n  {}",
                self.path.display(),
                refused.join("\n  ")
            ))
        }
    }

    /// Writes `bytes` to `rel`, creating its folders; returns its path.
    pub(super) fn write(&self, rel: &str, bytes: &[u8]) -> Result<PathBuf, String> {
        let (parent, name) = self.walk(rel, true)?;
        let shown = self.path_of(rel);
        let fail = |e: std::io::Error| format!("{}: cannot write it: {e}", shown.display());
        let name = name.expect("walk with create returns the file's name");
        if matches!(entry(&parent, &name).map_err(fail)?, Entry::File) {
            // Only with --force (walk refused it otherwise): the file is replaced, never
            // written through, so a hard link elsewhere keeps its content.
            // SAFETY: unlinkat with a valid C string and an open directory descriptor.
            if unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), 0) } != 0 {
                return Err(fail(std::io::Error::last_os_error()));
            }
        }
        let fd = open_at(
            &parent,
            &name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        )
        .map_err(fail)?;
        let mut f = File::from(fd);
        f.write_all(bytes).map_err(fail)?;
        Ok(shown)
    }

    /// Goes down `rel` part by part from the open directory, never following a symlink;
    /// creates missing folders when `create`. Returns the file's directory and name.
    fn walk(&self, rel: &str, create: bool) -> Result<(OwnedFd, Option<CString>), String> {
        let shown = self.path_of(rel);
        let refuse = |why: String| format!("{}: {why}", shown.display());
        let parts: Vec<&str> = rel.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(refuse(
                "not a plain relative path (an empty, '.' or '..' part)".into(),
            ));
        }
        if !self.allow.dotfiles {
            if let Some(p) = parts.iter().find(|p| p.starts_with('.')) {
                return Err(refuse(format!(
                    "not written: '{p}' starts with a dot, a place tools such as git run files from (--dotfiles writes it)"
                )));
            }
        }
        let io = |e: std::io::Error| refuse(e.to_string());
        let mut dir = self.dir.try_clone().map_err(io)?;
        let (last, folders) = parts.split_last().expect("split gives one part at least");
        for (i, part) in folders.iter().enumerate() {
            let at = parts[..=i].join("/");
            let c = cstr(part).map_err(refuse)?;
            match entry(&dir, &c).map_err(io)? {
                Entry::Dir => {}
                Entry::Missing if create => {
                    // SAFETY: mkdirat with a valid C string and an open directory descriptor.
                    let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o777) };
                    if rc != 0 {
                        let e = std::io::Error::last_os_error();
                        if e.kind() != std::io::ErrorKind::AlreadyExists {
                            return Err(refuse(format!("cannot create {at}: {e}")));
                        }
                    }
                }
                Entry::Missing => return Ok((dir, None)),
                Entry::Symlink => {
                    return Err(refuse(format!(
                        "{at} is a symlink; downloads never follow one"
                    )))
                }
                Entry::File | Entry::Other => {
                    return Err(refuse(format!("{at} is there and is not a directory")))
                }
            }
            dir = open_at(&dir, &c, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    refuse(format!("{at} is a symlink; downloads never follow one"))
                } else {
                    refuse(format!("cannot open {at}: {e}"))
                }
            })?;
        }
        let c = cstr(last).map_err(refuse)?;
        match entry(&dir, &c).map_err(io)? {
            Entry::Missing => {}
            Entry::File if self.allow.overwrite => {}
            Entry::File => {
                return Err(refuse(
                    "is already there; not replaced (--force replaces it)".into(),
                ))
            }
            Entry::Symlink => {
                return Err(refuse(
                    "is a symlink; downloads never follow or replace one".into(),
                ))
            }
            Entry::Dir | Entry::Other => {
                return Err(refuse("is there and is not a regular file".into()))
            }
        }
        Ok((dir, Some(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sweep-out-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn files_and_folders_are_written_inside_and_nothing_is_replaced_without_force() {
        let d = temp("plain");
        let out = OutDir::open(&d.join("new/out"), Allow::default()).unwrap();
        let p = out.write("a/b/c.txt", b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let e = out.write("a/b/c.txt", b"two").unwrap_err();
        assert!(
            e.contains("c.txt: is already there") && e.contains("--force"),
            "{e}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let forced = OutDir::open(
            &d.join("new/out"),
            Allow {
                overwrite: true,
                ..Allow::default()
            },
        )
        .unwrap();
        // A hard link elsewhere keeps its content: the file is replaced, not written through.
        std::fs::hard_link(&p, d.join("elsewhere")).unwrap();
        forced.write("a/b/c.txt", b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read(d.join("elsewhere")).unwrap(), b"one");
    }

    #[test]
    fn no_symlink_at_or_below_out_is_followed_even_with_force() {
        let d = temp("links");
        let outside = d.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("target.txt"), b"precious").unwrap();
        let out_path = d.join("out");
        std::fs::create_dir_all(&out_path).unwrap();
        std::os::unix::fs::symlink(outside.join("target.txt"), out_path.join("notes.txt")).unwrap();
        std::os::unix::fs::symlink(&outside, out_path.join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.join("nothing"), out_path.join("dangling")).unwrap();
        let allow = Allow {
            overwrite: true,
            dotfiles: true,
        };
        let out = OutDir::open(&out_path, allow).unwrap();
        for (rel, what) in [
            ("notes.txt", "notes.txt: is a symlink"),
            ("sub/target.txt", "sub is a symlink"),
            ("sub/new.txt", "sub is a symlink"),
            ("dangling", "dangling: is a symlink"),
        ] {
            let e = out.write(rel, b"evil").unwrap_err();
            assert!(e.contains(what), "{rel}: {e}");
        }
        assert_eq!(
            std::fs::read(outside.join("target.txt")).unwrap(),
            b"precious"
        );
        assert!(!outside.join("new.txt").exists() && !outside.join("nothing").exists());
        // --out itself may not be a symlink.
        let link = d.join("outlink");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let e = OutDir::open(&link, allow).unwrap_err();
        assert!(e.contains("is a symlink"), "{e}");
    }

    #[test]
    fn dot_paths_need_dotfiles_and_one_refusal_writes_nothing() {
        let d = temp("dots");
        let out = OutDir::open(&d, Allow::default()).unwrap();
        for rel in [
            ".git/config",
            "a/.hg/hgrc",
            ".envrc",
            "x/../y",
            "a//b",
            "./a",
        ] {
            assert!(out.check(rel).is_err(), "{rel}");
        }
        let e = out
            .check_all(["ok.txt", ".git/config", "also.txt", ".envrc"])
            .unwrap_err();
        assert!(
            e.contains(".git/config: not written: '.git'") && e.contains(".envrc"),
            "{e}"
        );
        assert!(
            e.contains("--dotfiles") && e.starts_with("nothing was written"),
            "{e}"
        );
        let dots = OutDir::open(
            &d,
            Allow {
                dotfiles: true,
                ..Allow::default()
            },
        )
        .unwrap();
        dots.write(".hydra/config.yaml", b"x").unwrap();
        assert!(d.join(".hydra/config.yaml").is_file());
    }
}
