//! The files a program trial hands back (docs/PROGRAMS.md): a directory the worker names for
//! each attempt (`SWEEP_FILES_DIR`, our `wandb` module's `wandb.run.dir`, where `wandb.save`
//! links what it saves), emptied before the program starts and read after it ends.
//!
//! Reading is bounded: at most the sweep's bytes (`program_options.max_files_mb`) and
//! [`MAX_FILES`] files, regular files only (a link is followed to a regular file, never to a
//! directory, a pipe or a device), names that are UTF-8 and valid paths. Whatever is left out
//! is named in a notice with the reason.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sweep_proto::files::{check_path, MAX_FILES};

/// Bytes a trial's files may take when the sweep does not say.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Directory levels read below the files directory.
const MAX_DEPTH: usize = 16;

/// What a program left in its files directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handed {
    /// Path (relative, '/'-separated) and bytes, in path order.
    pub files: Vec<(String, Vec<u8>)>,
    /// What was left out and why.
    pub notices: Vec<String>,
}

/// An empty files directory at `dir` (what an earlier attempt left there is removed).
pub fn prepare(dir: &Path) -> std::io::Result<PathBuf> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    std::path::absolute(dir)
}

/// The files under `dir`, at most `max_bytes` of them, and then the directory removed (the
/// files are in memory; a link's target is left alone).
pub fn collect(dir: &Path, max_bytes: u64) -> Handed {
    let mut h = Handed::default();
    let mut budget = max_bytes;
    walk(dir, "", 0, &mut budget, max_bytes, &mut h);
    discard(dir);
    h
}

/// What an attempt hands back from its files directory `dir` (if it has one): the files of a
/// finished or stopped attempt (`keep`); nothing of a failed or handed-back one, whose
/// directory is removed unread (its files would not be kept).
pub fn take(dir: Option<&Path>, keep: bool, max_bytes: u64) -> Handed {
    match dir {
        Some(d) if keep => collect(d, max_bytes),
        Some(d) => {
            discard(d);
            Handed::default()
        }
        None => Handed::default(),
    }
}

/// Removes the files directory `dir` unread (the attempt was handed back), and the run's and
/// the sweep's directories above it if that leaves them empty.
pub fn discard(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a trial's files directory");
        }
    }
    for above in dir.ancestors().skip(1).take(2) {
        if std::fs::remove_dir(above).is_err() {
            break;
        }
    }
}

fn walk(dir: &Path, prefix: &str, depth: usize, budget: &mut u64, max: u64, h: &mut Handed) {
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            if depth > 0 || e.kind() != std::io::ErrorKind::NotFound {
                h.notices
                    .push(format!("files: cannot read {}: {e}", dir.display()));
            }
            return;
        }
    };
    for e in read.flatten() {
        match e.file_name().into_string() {
            Ok(name) => entries.push((name, e.path())),
            Err(name) => h.notices.push(format!(
                "files: {prefix}{} is not kept: its name is not UTF-8",
                name.to_string_lossy()
            )),
        }
    }
    entries.sort();
    for (name, path) in entries {
        let rel = format!("{prefix}{name}");
        let Ok(own) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if own.is_dir() {
            if depth + 1 >= MAX_DEPTH {
                h.notices.push(format!(
                    "files: {rel}/ is not kept: more than {MAX_DEPTH} directory levels"
                ));
            } else {
                walk(&path, &format!("{rel}/"), depth + 1, budget, max, h);
            }
            continue;
        }
        let leave = |why: String, h: &mut Handed| {
            h.notices.push(format!("files: {rel} is not kept: {why}"));
        };
        let target = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                leave(format!("it links to nothing readable ({e})"), h);
                continue;
            }
        };
        if !target.is_file() {
            leave(
                if target.is_dir() {
                    "it links to a directory (save the files in it)".into()
                } else {
                    "it is not a regular file".into()
                },
                h,
            );
            continue;
        }
        if let Err(why) = check_path(&rel) {
            leave(why, h);
            continue;
        }
        if h.files.len() >= MAX_FILES {
            leave(format!("a trial keeps at most {MAX_FILES} files"), h);
            continue;
        }
        if target.len() > *budget {
            leave(over(target.len(), max), h);
            continue;
        }
        match read_bounded(&path, *budget) {
            Ok(Some(bytes)) => {
                *budget -= bytes.len() as u64;
                h.files.push((rel, bytes));
            }
            Ok(None) => leave(over(*budget + 1, max), h),
            Err(e) => leave(format!("cannot read it: {e}"), h),
        }
    }
}

fn over(bytes: u64, max: u64) -> String {
    format!(
        "{bytes} bytes would take the trial's files past {} MiB (program_options.max_files_mb)",
        max as f64 / (1024.0 * 1024.0)
    )
}

/// The file's bytes, or `None` when it holds more than `max` (it grew since it was listed).
/// Opened without blocking, so that a pipe put in its place cannot hang the worker.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sweep-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn files_links_and_directories_come_back_in_path_order_and_the_directory_goes() {
        let root = tmp("order");
        let dir = prepare(&root.join("files")).unwrap();
        assert!(dir.is_absolute());
        std::fs::write(dir.join("b.txt"), "bee").unwrap();
        std::fs::create_dir_all(dir.join("ckpt/deep")).unwrap();
        std::fs::write(dir.join("ckpt/deep/last.pt"), [0u8, 1, 2]).unwrap();
        // wandb.save links the program's own file; what counts is its content at the end.
        std::fs::write(root.join("model.pt"), "first").unwrap();
        symlink(root.join("model.pt"), dir.join("model.pt")).unwrap();
        std::fs::write(root.join("model.pt"), "final").unwrap();
        let h = collect(&dir, 1000);
        let got: Vec<(&str, &[u8])> = h
            .files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("b.txt", &b"bee"[..]),
                ("ckpt/deep/last.pt", &[0, 1, 2][..]),
                ("model.pt", &b"final"[..]),
            ]
        );
        assert!(h.notices.is_empty(), "{:?}", h.notices);
        assert!(!dir.exists());
        assert!(
            root.join("model.pt").exists(),
            "a link's target is left alone"
        );
        // An earlier attempt's files are gone when the next one starts.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("old"), "x").unwrap();
        prepare(&dir).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        // A failed attempt's are removed unread, with the directory.
        std::fs::write(dir.join("partial.pt"), "x").unwrap();
        assert_eq!(take(Some(&dir), false, 1000), Handed::default());
        assert!(!dir.exists());
        assert_eq!(take(None, true, 1000), Handed::default());
    }

    #[test]
    fn what_does_not_fit_or_cannot_be_read_safely_is_left_out_and_named() {
        let root = tmp("bounds");
        let dir = prepare(&root.join("files")).unwrap();
        std::fs::write(dir.join("a.bin"), vec![1u8; 60]).unwrap();
        std::fs::write(dir.join("b.bin"), vec![2u8; 50]).unwrap();
        std::fs::write(dir.join("c.bin"), vec![3u8; 40]).unwrap();
        symlink(root.join("missing"), dir.join("dangling")).unwrap();
        symlink(&root, dir.join("dirlink")).unwrap();
        symlink("/dev/zero", dir.join("zero")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let h = collect(&dir, 100);
        let names: Vec<&str> = h.files.iter().map(|(p, _)| p.as_str()).collect();
        // 60 fits, 50 would pass 100, 40 still fits.
        assert_eq!(names, vec!["a.bin", "c.bin"]);
        let all = h.notices.join("\n");
        for want in [
            "b.bin is not kept: 50 bytes would take the trial's files past",
            "dangling is not kept: it links to nothing",
            "dirlink is not kept: it links to a directory",
            "zero is not kept: it is not a regular file",
            "fifo is not kept: it is not a regular file",
        ] {
            assert!(all.contains(want), "{want:?} not in {all}");
        }
        // Nothing kept when the sweep allows nothing; a missing directory is no error.
        let dir = prepare(&root.join("none")).unwrap();
        std::fs::write(dir.join("a"), "a").unwrap();
        assert!(collect(&dir, 0).files.is_empty());
        assert_eq!(collect(&root.join("never"), 10), Handed::default());
    }

    #[test]
    fn too_many_files_or_levels_are_cut_with_a_notice() {
        let root = tmp("many");
        let dir = prepare(&root.join("files")).unwrap();
        for i in 0..MAX_FILES + 3 {
            std::fs::write(dir.join(format!("f{i:05}")), "").unwrap();
        }
        let mut deep = dir.join("z");
        for _ in 0..MAX_DEPTH {
            deep = deep.join("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("x"), "x").unwrap();
        let h = collect(&dir, 1 << 20);
        assert_eq!(h.files.len(), MAX_FILES);
        assert_eq!(h.files[MAX_FILES - 1].0, format!("f{:05}", MAX_FILES - 1));
        let all = h.notices.join("\n");
        assert!(
            all.contains("f01000 is not kept: a trial keeps at most 1000 files"),
            "{all}"
        );
        assert!(all.contains("directory levels"), "{all}");
    }
}
