//! Which data set a trial trains on, by the names configs use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Which data set a trial trains on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DatasetSpec {
    /// LeCun's handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST.
    FashionMnist,
    /// Any directory with the four IDX files.
    Path(PathBuf),
}

impl DatasetSpec {
    /// The canonical name used in configs and exports.
    pub fn name(&self) -> String {
        match self {
            DatasetSpec::Mnist => "mnist".into(),
            DatasetSpec::FashionMnist => "fashion_mnist".into(),
            DatasetSpec::Path(p) => p.display().to_string(),
        }
    }
}

impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for DatasetSpec {
    type Err = String;
    /// `mnist`, `fashion_mnist` (also `fashion-mnist`, `Fashion_MNIST`, `fashion`), or a path
    /// to an IDX directory (anything containing `/` or naming an existing directory).
    fn from_str(s: &str) -> Result<Self, String> {
        let key = s.trim().to_ascii_lowercase().replace('-', "_");
        match key.as_str() {
            "mnist" => Ok(DatasetSpec::Mnist),
            "fashion_mnist" | "fashionmnist" | "fashion" => Ok(DatasetSpec::FashionMnist),
            "" => Err(
                "expected mnist, fashion_mnist or a path to an IDX directory, got an empty string"
                    .into(),
            ),
            _ if s.contains('/') || s.contains('\\') || Path::new(s).is_dir() => {
                Ok(DatasetSpec::Path(PathBuf::from(s)))
            }
            _ => Err(format!(
                "expected mnist, fashion_mnist or a path to an IDX directory, got {s:?}"
            )),
        }
    }
}
