//! The files a program trial hands back (docs/PROGRAMS.md) as one payload: the list in a
//! [`pb::FilesHeader`] and the files' bytes one after another. Both ends check the list the
//! same way: the coordinator before it keeps them, a person's download before it writes them.

use std::collections::BTreeSet;

use crate::pb;
use crate::transfer::digest;

/// Most files a trial keeps.
pub const MAX_FILES: usize = 1_000;
/// Longest path of a kept file, in bytes.
pub const MAX_PATH_BYTES: usize = 512;
/// Most bytes of files a trial keeps, whatever its sweep allows.
pub const MAX_FILES_BYTES: u64 = 256 * 1024 * 1024;

/// Whether `path` can name a kept file: relative, '/'-separated, no empty, `.` or `..` part,
/// no control character or backslash, at most [`MAX_PATH_BYTES`].
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("an empty path".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!(
            "path {:?}… is longer than {MAX_PATH_BYTES} bytes",
            path.chars().take(40).collect::<String>()
        ));
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "path {path:?} holds a control character or a backslash"
        ));
    }
    if path.starts_with('/')
        || path
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(format!(
            "path {path:?} is not relative with '/' between names (no empty, '.' or '..' part)"
        ));
    }
    Ok(())
}

/// The files as a list and one payload, in the order given.
pub fn join(files: Vec<(String, Vec<u8>)>) -> (Vec<pb::FileInfo>, Vec<u8>) {
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    let mut data: Vec<u8> = Vec::new();
    // The first file's bytes become the payload (grown in place, not copied) and each later
    // one is dropped once copied: a single file is never held twice, and several at most
    // once more than the largest of them.
    let list = files
        .into_iter()
        .map(|(path, bytes)| {
            let info = pb::FileInfo {
                bytes: bytes.len() as u64,
                sha256: digest(&bytes),
                path,
            };
            if data.is_empty() {
                data = bytes;
                data.reserve_exact(total - data.len());
            } else {
                data.extend_from_slice(&bytes);
            }
            info
        })
        .collect();
    (list, data)
}

/// The payload `data` cut into the files `list` names, once the list holds up: at most
/// [`MAX_FILES`] files, each path valid and named once (none inside another as if it were a
/// directory), their lengths adding up to the payload's, each file's bytes with its SHA-256.
pub fn split<'a>(
    list: &'a [pb::FileInfo],
    data: &'a [u8],
) -> Result<Vec<(&'a pb::FileInfo, &'a [u8])>, String> {
    if list.len() > MAX_FILES {
        return Err(format!(
            "{} files; at most {MAX_FILES} are kept",
            list.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for f in list {
        check_path(&f.path)?;
        if !seen.insert(f.path.as_str()) {
            return Err(format!("path {:?} is listed twice", f.path));
        }
    }
    for f in list {
        let mut dir = f.path.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if seen.contains(parent) {
                return Err(format!(
                    "{:?} is a file and also the directory of {:?}",
                    parent, f.path
                ));
            }
            dir = parent;
        }
    }
    let total = list
        .iter()
        .try_fold(0u64, |s, f| s.checked_add(f.bytes))
        .ok_or("the files' lengths overflow")?;
    if total != data.len() as u64 {
        return Err(format!(
            "the files' lengths add up to {total} bytes, not the {} sent",
            data.len()
        ));
    }
    let mut at = 0usize;
    let mut out = Vec::with_capacity(list.len());
    for f in list {
        let bytes = &data[at..at + f.bytes as usize];
        at += f.bytes as usize;
        if digest(bytes) != f.sha256 {
            return Err(format!("{:?} does not have the SHA-256 listed", f.path));
        }
        out.push((f, bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<(String, Vec<u8>)> {
        names
            .iter()
            .map(|n| (n.to_string(), n.as_bytes().repeat(3)))
            .collect()
    }

    #[test]
    fn joined_files_split_back_into_the_same_files() {
        let f = files(&["model.pt", "ckpt/last.pt", "ckpt/best.pt", "empty"]);
        let mut f2 = f.clone();
        f2[3].1.clear();
        let (list, data) = join(f2.clone());
        let back = split(&list, &data).unwrap();
        assert_eq!(back.len(), 4);
        for ((p, b), (info, bytes)) in f2.iter().zip(back) {
            assert_eq!((p.as_str(), b.as_slice()), (info.path.as_str(), bytes));
        }
    }

    #[test]
    fn paths_that_could_write_outside_the_download_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/",
            "a\\b",
            "a\nb",
            "a\0b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} passed");
        }
        assert!(check_path(&"a".repeat(MAX_PATH_BYTES + 1)).is_err());
        for good in ["model.pt", "a/b/c.txt", "ä ö.bin", ".hidden", "..a", "a..b"] {
            check_path(good).unwrap();
        }
    }

    #[test]
    fn a_list_that_does_not_hold_up_is_refused_with_its_reason() {
        let (list, data) = join(files(&["a", "b"]));
        let e = |list: &[pb::FileInfo], data: &[u8]| split(list, data).unwrap_err();
        assert!(e(&list, &data[1..]).contains("add up to 6 bytes, not the 5"));
        let mut l = list.clone();
        l[1].sha256 = l[0].sha256.clone();
        assert!(e(&l, &data).contains("\"b\" does not have the SHA-256"));
        let mut l = list.clone();
        l[1].path = "a".into();
        assert!(e(&l, &data).contains("listed twice"));
        let mut l = list.clone();
        l[1].path = "a/b".into();
        assert!(e(&l, &data).contains("also the directory"));
        let mut l = list.clone();
        l[1].path = "../b".into();
        assert!(e(&l, &data).contains("not relative"));
        let mut l = list.clone();
        l[0].bytes = u64::MAX;
        assert!(e(&l, &data).contains("overflow"));
        let many: Vec<pb::FileInfo> = (0..=MAX_FILES)
            .map(|i| pb::FileInfo {
                path: format!("f{i}"),
                ..Default::default()
            })
            .collect();
        assert!(e(&many, &[]).contains("at most 1000"));
    }

    #[test]
    fn one_file_becomes_the_payload_without_a_copy() {
        let bytes = vec![7u8; 1 << 20];
        let at = bytes.as_ptr();
        let (list, data) = join(vec![("a.bin".into(), bytes)]);
        assert_eq!(data.as_ptr(), at, "the file's own buffer is the payload");
        assert_eq!((list.len(), data.len()), (1, 1 << 20));
        // An empty first file does not hold the rest back.
        let (list, data) = join(vec![("e".into(), vec![]), ("f".into(), vec![1, 2])]);
        assert_eq!((list.len(), data), (2, vec![1, 2]));
    }
}
