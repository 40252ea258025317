//! Our `wandb` Python module (`clients/python/wandb`), compiled into the worker and written to
//! a directory that goes first on each program's `PYTHONPATH`, so that an unchanged script's
//! `import wandb` reports to this worker even where the real `wandb` is installed. The files
//! are written once per content (the directory name carries their digest), so workers of
//! different versions on one machine do not overwrite each other's.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The package's files, relative to the directory that goes on `PYTHONPATH`.
pub const FILES: &[(&str, &str)] = &[
    (
        "wandb/__init__.py",
        include_str!("../../../clients/python/wandb/__init__.py"),
    ),
    (
        "wandb/_files.py",
        include_str!("../../../clients/python/wandb/_files.py"),
    ),
    (
        "wandb/_agent.py",
        include_str!("../../../clients/python/wandb/_agent.py"),
    ),
    (
        "wandb/_install.py",
        include_str!("../../../clients/python/wandb/_install.py"),
    ),
    (
        "wandb/_media.py",
        include_str!("../../../clients/python/wandb/_media.py"),
    ),
    (
        "wandb/_transport.py",
        include_str!("../../../clients/python/wandb/_transport.py"),
    ),
    (
        "wandb/plot.py",
        include_str!("../../../clients/python/wandb/plot.py"),
    ),
    (
        "wandb/sklearn.py",
        include_str!("../../../clients/python/wandb/sklearn.py"),
    ),
    (
        "wandb/util.py",
        include_str!("../../../clients/python/wandb/util.py"),
    ),
    (
        "wandb/keras.py",
        include_str!("../../../clients/python/wandb/keras.py"),
    ),
    (
        "wandb/agents/__init__.py",
        include_str!("../../../clients/python/wandb/agents/__init__.py"),
    ),
    (
        "wandb/agents/pyagent.py",
        include_str!("../../../clients/python/wandb/agents/pyagent.py"),
    ),
    (
        "wandb/integration/__init__.py",
        include_str!("../../../clients/python/wandb/integration/__init__.py"),
    ),
    (
        "wandb/integration/keras.py",
        include_str!("../../../clients/python/wandb/integration/keras.py"),
    ),
];

/// Writes the package under `base` (once per content) and returns the directory to put on
/// `PYTHONPATH`.
pub fn install(base: &Path) -> std::io::Result<PathBuf> {
    let mut h = Sha256::new();
    for (name, text) in FILES {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    let digest: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = base.join(format!("sweep-python-{digest}"));
    if dir.join(FILES[0].0).is_file() {
        return Ok(dir);
    }
    // Written beside, then renamed into place: another worker may be doing the same.
    let tmp = base.join(format!("sweep-python-{digest}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for (name, text) in FILES {
        let path = tmp.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        Err(_) if dir.join(FILES[0].0).is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn installs_once_per_content() {
        let base = std::env::temp_dir().join(format!("sweep-shim-test-{}", std::process::id()));
        let a = super::install(&base).unwrap();
        let b = super::install(&base).unwrap();
        assert_eq!(a, b);
        assert!(a.join("wandb/__init__.py").is_file());
        let _ = std::fs::remove_dir_all(base);
    }

    /// Every file of the package is compiled in (a module left out would be missing only when
    /// a worker runs the script).
    #[test]
    fn every_file_of_the_package_is_compiled_in() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/python");
        let mut found = Vec::new();
        let mut dirs = vec![root.join("wandb")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    if p.file_name().is_some_and(|n| n != "__pycache__") {
                        dirs.push(p);
                    }
                } else if p.extension().is_some_and(|x| x == "py") {
                    found.push(p.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        let mut ours: Vec<String> = super::FILES.iter().map(|f| f.0.to_string()).collect();
        ours.sort();
        assert_eq!(found, ours);
    }
}
