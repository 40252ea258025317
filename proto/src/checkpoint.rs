//! A checkpoint on the wire: split into chunks behind a header that gives its length and
//! SHA-256, and put back together with every check (header first, bounded length, the length
//! and digest it announced, a deadline for each chunk). Both the coordinator (SaveCheckpoint)
//! and the worker (GetCheckpoint) receive with [`Incoming`].

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::conn::CHECKPOINT_CHUNK_BYTES;
use crate::pb;

/// SHA-256 of `data`, as hex.
pub fn digest(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `data` as chunks: the first carries `header` (its `bytes` and `sha256` filled in here).
pub fn chunks(mut header: pb::CheckpointHeader, data: &[u8]) -> Vec<pb::CheckpointChunk> {
    header.bytes = data.len() as u64;
    header.sha256 = digest(data);
    let mut out: Vec<pb::CheckpointChunk> = data
        .chunks(CHECKPOINT_CHUNK_BYTES)
        .map(|c| pb::CheckpointChunk {
            header: None,
            data: c.to_vec(),
        })
        .collect();
    if out.is_empty() {
        out.push(pb::CheckpointChunk::default());
    }
    out[0].header = Some(header);
    out
}

/// A checkpoint being received: its header is read, its bytes follow.
#[derive(Debug)]
pub struct Incoming {
    stream: tonic::Streaming<pb::CheckpointChunk>,
    /// What the sender announced.
    pub header: pb::CheckpointHeader,
    first: Vec<u8>,
    wait: Duration,
}

async fn next(
    stream: &mut tonic::Streaming<pb::CheckpointChunk>,
    wait: Duration,
) -> Result<Option<pb::CheckpointChunk>, String> {
    match tokio::time::timeout(wait, stream.message()).await {
        Err(_) => Err(format!("no chunk came within {} s", wait.as_secs())),
        Ok(Err(s)) => Err(format!("the stream failed: {}", s.message())),
        Ok(Ok(c)) => Ok(c),
    }
}

impl Incoming {
    /// Reads the header (the first chunk); refuses a checkpoint longer than `max` bytes. Each
    /// chunk must come within `wait`.
    pub async fn start(
        mut stream: tonic::Streaming<pb::CheckpointChunk>,
        max: u64,
        wait: Duration,
    ) -> Result<Incoming, String> {
        let first = next(&mut stream, wait)
            .await?
            .ok_or("the stream ended before its header")?;
        let header = first.header.ok_or("the first chunk carries no header")?;
        if header.bytes > max {
            return Err(format!(
                "checkpoint of {} bytes; at most {max} are kept",
                header.bytes
            ));
        }
        Ok(Incoming {
            stream,
            header,
            first: first.data,
            wait,
        })
    }

    /// Reads the rest; the bytes, once they are as long as announced and have its digest.
    pub async fn finish(mut self) -> Result<(pb::CheckpointHeader, Vec<u8>), String> {
        let want = self.header.bytes as usize;
        let mut data = Vec::with_capacity(want);
        let mut chunk = std::mem::take(&mut self.first);
        loop {
            if data.len() + chunk.len() > want {
                return Err(format!("more than the {want} bytes announced"));
            }
            data.extend_from_slice(&chunk);
            match next(&mut self.stream, self.wait).await? {
                Some(c) if c.header.is_some() => return Err("a second header".into()),
                Some(c) => chunk = c.data,
                None => break,
            }
        }
        if data.len() != want {
            return Err(format!("{} bytes came of the {want} announced", data.len()));
        }
        if digest(&data) != self.header.sha256 {
            return Err("its bytes do not have the SHA-256 announced".into());
        }
        Ok((self.header, data))
    }
}
