//! The IDX file format (LeCun's MNIST format), gzip-compressed or raw.
//!
//! An IDX file is a 4-byte magic number — two zero bytes, a type code, the number of
//! dimensions — followed by one big-endian `u32` per dimension and then the data. We read
//! only unsigned-byte data (type `0x08`), which is what every MNIST-style data set uses.
//! The reader checks the magic, the dimensions and that the data is exactly as long as the
//! dimensions say, and never panics on bad bytes.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::DataError;

/// Most bytes we accept in one decompressed IDX file (a guard against gzip bombs and
/// absurd headers); MNIST's largest file is 47 MB.
pub const MAX_IDX_BYTES: usize = 1 << 31;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Size of each dimension, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// The values in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Reads an IDX file, decompressing it when it starts with the gzip magic.
pub fn read_idx_file(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_idx(&bytes).map_err(|reason| DataError::Format {
        path: path.to_path_buf(),
        reason,
    })
}

/// Decodes IDX bytes (gzip or raw). The error is a human-readable reason.
pub fn decode_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        // The gzip trailer's last four bytes hold the uncompressed size (mod 2³²): a capacity
        // hint, so the buffer is allocated once. A lying trailer only costs a reallocation.
        let hint = bytes
            .get(bytes.len().saturating_sub(4)..)
            .and_then(|t| <[u8; 4]>::try_from(t).ok())
            .map_or(0, |t| u32::from_le_bytes(t) as usize);
        // Deflate expands at most 1,032-fold, so a bigger claim is a lie: don't reserve it.
        let hint = hint
            .min(bytes.len().saturating_mul(1032))
            .min(MAX_IDX_BYTES);
        let mut out = Vec::with_capacity(hint + 1);
        let mut dec = GzDecoder::new(bytes).take(MAX_IDX_BYTES as u64 + 1);
        dec.read_to_end(&mut out)
            .map_err(|e| format!("gzip stream is corrupt or truncated ({e})"))?;
        if out.len() > MAX_IDX_BYTES {
            return Err(format!("decompressed data exceeds {MAX_IDX_BYTES} bytes"));
        }
        let (dims, header) = parse_header(&out)?;
        // Drop the header in place: no second copy of a 47 MB image file.
        out.drain(..header);
        Ok(IdxArray { dims, data: out })
    } else {
        let (dims, header) = parse_header(bytes)?;
        Ok(IdxArray {
            dims,
            data: bytes[header..].to_vec(),
        })
    }
}

/// Checks the header and the data length; returns the dimensions and the header's length.
fn parse_header(bytes: &[u8]) -> Result<(Vec<usize>, usize), String> {
    if bytes.len() < 4 {
        return Err(format!(
            "file is {} bytes long, too short for an IDX header (4 bytes)",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad magic number {:02x}{:02x}{:02x}{:02x}: an IDX file starts with two zero bytes",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX data type 0x{:02x} is not supported (expected 0x08, unsigned byte)",
            bytes[2]
        ));
    }
    let ndim = usize::from(bytes[3]);
    if ndim == 0 {
        return Err("IDX header declares 0 dimensions".to_string());
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format!(
            "file is {} bytes long, too short for an IDX header with {ndim} dimensions ({header} bytes)",
            bytes.len()
        ));
    }
    let mut dims = Vec::with_capacity(ndim);
    let mut total: usize = 1;
    for d in 0..ndim {
        let o = 4 + 4 * d;
        let v = u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize;
        total = total
            .checked_mul(v)
            .filter(|t| *t <= MAX_IDX_BYTES)
            .ok_or_else(|| format!("IDX dimensions {dims:?}×{v}… exceed {MAX_IDX_BYTES} bytes"))?;
        dims.push(v);
    }
    let body = &bytes[header..];
    if body.len() != total {
        return Err(format!(
            "dimensions {dims:?} need {total} data bytes but the file has {} (truncated or padded)",
            body.len()
        ));
    }
    Ok((dims, header))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_raw_and_gzip() {
        let raw = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let a = decode_idx(&raw).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(decode_idx(&gz(&raw)).unwrap(), a);
    }

    #[test]
    fn refuses_bad_magic_type_and_length() {
        assert!(decode_idx(&[1, 0, 8, 1, 0, 0, 0, 0])
            .unwrap_err()
            .contains("magic"));
        assert!(decode_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 0])
            .unwrap_err()
            .contains("0x0d"));
        let short = idx(&[4], &[1, 2, 3]);
        assert!(decode_idx(&short).unwrap_err().contains("truncated"));
        let long = idx(&[2], &[1, 2, 3]);
        assert!(decode_idx(&long).unwrap_err().contains("need 2 data bytes"));
        assert!(decode_idx(&[0, 0]).unwrap_err().contains("too short"));
        assert!(decode_idx(&[0, 0, 8, 3, 0, 0])
            .unwrap_err()
            .contains("header"));
        // A header claiming an enormous array is refused before any allocation.
        let huge = idx(&[u32::MAX, u32::MAX], &[]);
        assert!(decode_idx(&huge).unwrap_err().contains("exceed"));
    }

    #[test]
    fn refuses_truncated_gzip() {
        let raw = idx(&[100], &[7; 100]);
        let z = gz(&raw);
        let cut = &z[..z.len() - 10];
        assert!(decode_idx(cut).unwrap_err().contains("gzip"));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: prefixes, bit flips and random tails.
        let base = gz(&idx(&[3, 2], &[9, 8, 7, 6, 5, 4]));
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut b = base.clone();
            let pos = (state as usize) % b.len();
            b[pos] ^= (state >> 32) as u8 | 1;
            b.truncate(1 + (i % b.len()));
            let _ = decode_idx(&b);
            let _ = decode_idx(&b[..b.len().min(6)]);
        }
    }
}

#[cfg(test)]
mod fuzz_corpus {
    use rand::{Rng, SeedableRng};

    /// The committed fuzz corpus (`fuzz/corpus/idx`) and 2,000 seeded mutations of each entry
    /// (header bytes, dimensions, gzip framing): the reader never panics, and what it accepts
    /// is exactly as long as its dimensions say. (`cargo fuzz run idx` explores further.)
    #[test]
    fn the_reader_never_panics_on_the_corpus_or_its_mutations() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/idx");
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| std::fs::read(f.unwrap().path()).unwrap())
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 4);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for seed in &seeds {
            for k in 0..=2000 {
                let mut v = seed.clone();
                if k > 0 {
                    for _ in 0..rng.random_range(1..4) {
                        // Mostly near the front, where the header and gzip framing are.
                        let hi = v
                            .len()
                            .min(if rng.random_bool(0.8) { 24 } else { usize::MAX });
                        let at = rng.random_range(0..=hi);
                        match rng.random_range(0..4) {
                            0 if at < v.len() => v[at] = rng.random(),
                            1 => v.insert(at, rng.random()),
                            2 if at < v.len() => {
                                v.remove(at);
                            }
                            _ => v.truncate(at),
                        }
                    }
                }
                let r = std::panic::catch_unwind(|| super::decode_idx(&v));
                match r {
                    Err(_) => panic!("decode_idx panicked on {:02x?}", &v[..v.len().min(64)]),
                    Ok(Ok(a)) => assert_eq!(a.data.len(), a.dims.iter().product::<usize>()),
                    Ok(Err(reason)) => assert!(!reason.is_empty()),
                }
            }
        }
    }
}
