//! Data sets: the IDX reader, the registry of built-in data sets, and the train/validation
//! split.
//!
//! A data set is a directory holding the four classic IDX files
//! (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, each optionally `.gz`). The built-in ones (`mnist`,
//! `fashion_mnist`) live under the data directory and have their SHA-256 digests checked on
//! load; any other directory in the same layout works by path. Images stay `u8` in memory and
//! are converted to floats one batch at a time; [`load`] caches each loaded data set so that
//! several trials in one process share one copy.

pub mod idx;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// Errors while locating, reading or checking a data set. Each names the file or directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A data directory lacks one of the four IDX files.
    #[error("{dir}: missing {name} (or {name}.gz); an IDX data set directory holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each optionally gzipped")]
    Missing {
        /// The data set directory.
        dir: PathBuf,
        /// The file name that was not found.
        name: &'static str,
    },
    /// A built-in file's SHA-256 digest differs from the one recorded in the source.
    #[error("{path}: SHA-256 is {actual}, expected {expected} (the file is corrupt or was replaced; restore it from git)")]
    Checksum {
        /// The file whose digest is wrong.
        path: PathBuf,
        /// The recorded digest.
        expected: &'static str,
        /// The digest of the file on disk.
        actual: String,
    },
    /// A file is not a well-formed IDX file.
    #[error("{path}: not a valid IDX file: {reason}")]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The files are well-formed but do not fit together (counts, shapes, labels).
    #[error("{dir}: {reason}")]
    Inconsistent {
        /// The data set directory.
        dir: PathBuf,
        /// What does not fit.
        reason: String,
    },
}

impl DataError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub use sweep_trainer::dataset::DatasetSpec;

/// Fashion-MNIST's class names, in label order.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// SHA-256 of the committed `.gz` files, in [`FILES`] order.
const MNIST_SHA256: [&str; 4] = [
    "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
];
const FASHION_SHA256: [&str; 4] = [
    "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
];

/// Images and labels of one part (train or test) of a data set.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Pixels, `len × features` bytes, one image per row.
    pub images: Vec<u8>,
    /// One class label per image.
    pub labels: Vec<u8>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A loaded data set: train and test images as bytes, and the class names.
#[derive(Debug)]
pub struct Dataset {
    /// Canonical name (see [`DatasetSpec::name`]).
    pub name: String,
    /// Pixels per image (rows × cols, 784 for MNIST).
    pub features: usize,
    /// Image height and width, for pictures of samples.
    pub shape: (usize, usize),
    /// Class names in label order; their count is the network's output width.
    pub classes: Vec<String>,
    /// The 60,000 training images (MNIST) from which validation is split off.
    pub train: ImageSet,
    /// The held-out test images.
    pub test: ImageSet,
    /// [`Dataset::sha256`], computed on first use.
    digest: std::sync::OnceLock<String>,
}

impl Dataset {
    /// SHA-256 of the decoded data: training images, training labels, test images, test
    /// labels, each preceded by its length as a little-endian `u64` — the same for the same
    /// images however the files were compressed. A saved model's card and a checkpoint record
    /// it. Computed once per data set (the data set is shared by every trial of a process).
    pub fn sha256(&self) -> String {
        self.digest.get_or_init(|| self.digest_now()).clone()
    }

    fn digest_now(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            &self.train.images,
            &self.train.labels,
            &self.test.images,
            &self.test.labels,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Where the data sets live: `$SWEEP_DATA_DIR`, else the repository's `data/` (found from the
/// build location or the current directory).
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SWEEP_DATA_DIR") {
        return PathBuf::from(d);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("data");
    if built.is_dir() {
        return built;
    }
    PathBuf::from("data")
}

/// The directory and expected digests of a data set.
fn locate(spec: &DatasetSpec, data_dir: &Path) -> (PathBuf, Option<&'static [&'static str; 4]>) {
    match spec {
        DatasetSpec::Mnist => (data_dir.join("mnist"), Some(&MNIST_SHA256)),
        DatasetSpec::FashionMnist => (data_dir.join("fashion-mnist"), Some(&FASHION_SHA256)),
        DatasetSpec::Path(p) => (p.clone(), None),
    }
}

type Cache = Mutex<HashMap<(DatasetSpec, PathBuf), Weak<Dataset>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads a data set, or returns the copy already loaded in this process.
///
/// The cache holds weak references: the data stays in memory while a trial uses it.
pub fn load(spec: &DatasetSpec, data_dir: &Path) -> Result<Arc<Dataset>, DataError> {
    let key = (spec.clone(), data_dir.to_path_buf());
    // The lock is held while loading so that concurrent trials load a data set once.
    let mut map = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ds) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(ds);
    }
    let ds = Arc::new(load_uncached(spec, data_dir)?);
    map.insert(key, Arc::downgrade(&ds));
    Ok(ds)
}

/// Loads a data set from disk, checking digests of built-in files.
pub fn load_uncached(spec: &DatasetSpec, data_dir: &Path) -> Result<Dataset, DataError> {
    let (dir, digests) = locate(spec, data_dir);
    if !dir.is_dir() {
        return Err(DataError::Io {
            path: dir.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "data set directory not found (set --data-dir or SWEEP_DATA_DIR)",
            ),
        });
    }
    let mut arrays = Vec::with_capacity(4);
    for (i, name) in FILES.iter().enumerate() {
        let gz = dir.join(format!("{name}.gz"));
        let raw = dir.join(name);
        let path = if gz.is_file() {
            gz
        } else if raw.is_file() {
            raw
        } else {
            return Err(DataError::Missing {
                dir: dir.clone(),
                name,
            });
        };
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        if let Some(d) = digests {
            // The digests are of the committed .gz files; a raw file in a built-in
            // directory is checked after the same rule, so it must be gzipped.
            let actual = hex(&Sha256::digest(&bytes));
            if actual != d[i] {
                return Err(DataError::Checksum {
                    path,
                    expected: d[i],
                    actual,
                });
            }
        }
        let arr = idx::decode_idx(&bytes).map_err(|reason| DataError::Format {
            path: path.clone(),
            reason,
        })?;
        arrays.push((path, arr));
    }
    let mut it = arrays.into_iter();
    let (Some(tr_i), Some(tr_l), Some(te_i), Some(te_l)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        unreachable!("four files were read");
    };
    let incons = |reason: String| DataError::Inconsistent {
        dir: dir.clone(),
        reason,
    };
    let image_shape = |(p, a): &(PathBuf, idx::IdxArray)| -> Result<(usize, usize), DataError> {
        match a.dims.as_slice() {
            [_, r, c] if *r > 0 && *c > 0 => Ok((*r, *c)),
            d => Err(DataError::Format {
                path: p.clone(),
                reason: format!("expected 3 dimensions (count, rows, cols), got {d:?}"),
            }),
        }
    };
    let shape = image_shape(&tr_i)?;
    let test_shape = image_shape(&te_i)?;
    if shape != test_shape {
        return Err(incons(format!(
            "train images are {}×{} but test images are {}×{}",
            shape.0, shape.1, test_shape.0, test_shape.1
        )));
    }
    for (p, a) in [&tr_l, &te_l] {
        if a.dims.len() != 1 {
            return Err(DataError::Format {
                path: p.clone(),
                reason: format!("expected 1 dimension (count) for labels, got {:?}", a.dims),
            });
        }
    }
    for ((_, imgs), (lp, labs)) in [(&tr_i, &tr_l), (&te_i, &te_l)] {
        if imgs.dims[0] != labs.dims[0] {
            return Err(incons(format!(
                "{} has {} labels but its images file has {} images",
                lp.display(),
                labs.dims[0],
                imgs.dims[0]
            )));
        }
    }
    if tr_l.1.data.is_empty() || te_l.1.data.is_empty() {
        return Err(incons(
            "train and test sets must each hold at least one image".into(),
        ));
    }
    let max_label = tr_l
        .1
        .data
        .iter()
        .chain(&te_l.1.data)
        .copied()
        .max()
        .unwrap_or(0);
    let classes: Vec<String> = match spec {
        DatasetSpec::FashionMnist => FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
        _ => (0..=max_label).map(|c| c.to_string()).collect(),
    };
    if usize::from(max_label) >= classes.len() {
        return Err(incons(format!(
            "label {max_label} is out of range for {} classes",
            classes.len()
        )));
    }
    if classes.len() < 2 {
        return Err(incons("labels must span at least 2 classes".into()));
    }
    Ok(Dataset {
        name: spec.name(),
        features: shape.0 * shape.1,
        shape,
        classes,
        train: ImageSet {
            images: tr_i.1.data,
            labels: tr_l.1.data,
        },
        test: ImageSet {
            images: te_i.1.data,
            labels: te_l.1.data,
        },
        digest: std::sync::OnceLock::new(),
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Seed of the validation split: fixed, so that every trial of every sweep validates on the
/// same images and validation metrics are comparable.
pub const SPLIT_SEED: u64 = 0x5eed_da7a;

/// The indices of the training and validation images within the training file.
#[derive(Debug, Clone)]
pub struct Split {
    /// Images a trial trains on.
    pub train: Vec<u32>,
    /// Images a trial validates on (10% of the training file, fixed seed).
    pub val: Vec<u32>,
}

impl Split {
    /// Splits `n` training images: a fixed-seed permutation, the first 10% (rounded) held out
    /// for validation. `train_samples` keeps only the first `train_samples` training images
    /// in file order (for quick runs); validation is unchanged.
    pub fn new(n: usize, train_samples: Option<usize>) -> Split {
        let mut perm: Vec<u32> = (0..n as u32).collect();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
        let n_val = if n >= 10 { n / 10 } else { 0 };
        let val = perm[..n_val].to_vec();
        let mut train = perm[n_val..].to_vec();
        train.sort_unstable();
        if let Some(k) = train_samples {
            train.truncate(k);
        }
        Split { train, val }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_fixed_disjoint_and_ten_percent() {
        let a = Split::new(60_000, None);
        let b = Split::new(60_000, None);
        assert_eq!(a.val, b.val);
        assert_eq!(a.val.len(), 6_000);
        assert_eq!(a.train.len(), 54_000);
        let mut all: Vec<u32> = a.train.iter().chain(&a.val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..60_000).collect::<Vec<_>>());
        let c = Split::new(60_000, Some(5_000));
        assert_eq!(c.val, a.val);
        assert_eq!(c.train, a.train[..5_000]);
    }

    #[test]
    fn dataset_names_and_aliases() {
        for s in ["fashion_mnist", "Fashion_MNIST", "fashion-mnist", "FASHION"] {
            assert_eq!(s.parse::<DatasetSpec>().unwrap(), DatasetSpec::FashionMnist);
        }
        assert_eq!("MNIST".parse::<DatasetSpec>().unwrap(), DatasetSpec::Mnist);
        assert!(matches!(
            "./x".parse::<DatasetSpec>().unwrap(),
            DatasetSpec::Path(_)
        ));
        let e = "cifar".parse::<DatasetSpec>().unwrap_err();
        assert!(e.contains("mnist, fashion_mnist"), "{e}");
    }
}
