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
}
