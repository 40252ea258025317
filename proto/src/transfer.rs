//! A large payload on the wire (a checkpoint, a trial's files): split into chunks behind a
//! header that gives its length and SHA-256, and put back together with every check (header
//! first, bounded length, the length and digest it announced, a deadline for each chunk).
//! Whoever receives one (the coordinator: SaveCheckpoint, SaveFiles; a worker: GetCheckpoint;
//! a person: GetFiles) uses [`Incoming`].

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_stream::{Stream, StreamExt};

use crate::conn::CHUNK_BYTES;
use crate::pb;

/// SHA-256 of `data`, as hex.
pub fn digest(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A message that carries a payload in pieces: an optional header (in the first only) and
/// bytes.
pub trait Chunk: Default + Send + 'static {
    /// What the first piece says about the payload.
    type Header: Clone + Send;
    /// A piece of `data`, with `header` in the first.
    fn new(header: Option<Self::Header>, data: Vec<u8>) -> Self;
    /// The piece's header (if any) and bytes.
    fn parts(self) -> (Option<Self::Header>, Vec<u8>);
    /// The payload's announced length and SHA-256.
    fn totals(header: &Self::Header) -> (u64, &str);
    /// Fills in the payload's length and SHA-256.
    fn set_totals(header: &mut Self::Header, bytes: u64, sha256: String);
}

macro_rules! chunk {
    ($chunk:ty, $header:ty) => {
        impl Chunk for $chunk {
            type Header = $header;
            fn new(header: Option<$header>, data: Vec<u8>) -> Self {
                Self { header, data }
            }
            fn parts(self) -> (Option<$header>, Vec<u8>) {
                (self.header, self.data)
            }
            fn totals(h: &$header) -> (u64, &str) {
                (h.bytes, &h.sha256)
            }
            fn set_totals(h: &mut $header, bytes: u64, sha256: String) {
                h.bytes = bytes;
                h.sha256 = sha256;
            }
        }
    };
}

chunk!(pb::CheckpointChunk, pb::CheckpointHeader);
chunk!(pb::FilesChunk, pb::FilesHeader);

/// `data` as chunks: the first carries `header` (its length and SHA-256 filled in here).
pub fn chunks<C: Chunk>(mut header: C::Header, data: &[u8]) -> Vec<C> {
    C::set_totals(&mut header, data.len() as u64, digest(data));
    let mut header = Some(header);
    let mut out: Vec<C> = data
        .chunks(CHUNK_BYTES)
        .map(|c| C::new(header.take(), c.to_vec()))
        .collect();
    if let Some(h) = header {
        out.push(C::new(Some(h), Vec::new()));
    }
    out
}

/// A payload being received: its header is read, its bytes follow. `S` is the stream of
/// chunks (a gRPC request's or answer's).
#[derive(Debug)]
pub struct Incoming<C: Chunk, S = tonic::Streaming<C>> {
    stream: S,
    /// What the sender announced.
    pub header: C::Header,
    first: Vec<u8>,
    wait: Duration,
}

async fn next<C, S>(stream: &mut S, wait: Duration) -> Result<Option<C>, String>
where
    S: Stream<Item = Result<C, tonic::Status>> + Unpin,
{
    match tokio::time::timeout(wait, stream.next()).await {
        Err(_) => Err(format!("no chunk came within {} s", wait.as_secs())),
        Ok(Some(Err(s))) => Err(format!("the stream failed: {}", s.message())),
        Ok(Some(Ok(c))) => Ok(Some(c)),
        Ok(None) => Ok(None),
    }
}

impl<C, S> Incoming<C, S>
where
    C: Chunk,
    S: Stream<Item = Result<C, tonic::Status>> + Unpin,
{
    /// Reads the header (the first chunk); refuses a payload longer than `max` bytes. Each
    /// chunk must come within `wait`.
    pub async fn start(mut stream: S, max: u64, wait: Duration) -> Result<Self, String> {
        let (header, first) = next(&mut stream, wait)
            .await?
            .ok_or("the stream ended before its header")?
            .parts();
        let header = header.ok_or("the first chunk carries no header")?;
        let (bytes, _) = C::totals(&header);
        if bytes > max {
            return Err(format!("{bytes} bytes; at most {max} are kept"));
        }
        Ok(Incoming {
            stream,
            header,
            first,
            wait,
        })
    }

    /// Reads the rest; the bytes, once they are as long as announced and have its digest.
    pub async fn finish(mut self) -> Result<(C::Header, Vec<u8>), String> {
        let (want, _) = C::totals(&self.header);
        let want = want as usize;
        let mut data = Vec::with_capacity(want);
        let mut chunk = std::mem::take(&mut self.first);
        loop {
            if data.len() + chunk.len() > want {
                return Err(format!("more than the {want} bytes announced"));
            }
            data.extend_from_slice(&chunk);
            match next(&mut self.stream, self.wait).await? {
                Some(c) => match c.parts() {
                    (Some(_), _) => return Err("a second header".into()),
                    (None, d) => chunk = d,
                },
                None => break,
            }
        }
        if data.len() != want {
            return Err(format!("{} bytes came of the {want} announced", data.len()));
        }
        if digest(&data) != C::totals(&self.header).1 {
            return Err("its bytes do not have the SHA-256 announced".into());
        }
        Ok((self.header, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> pb::FilesHeader {
        pb::FilesHeader {
            sweep_id: "s".into(),
            ..Default::default()
        }
    }

    async fn receive(
        pieces: Vec<pb::FilesChunk>,
        max: u64,
    ) -> Result<(pb::FilesHeader, Vec<u8>), String> {
        let stream = tokio_stream::iter(pieces.into_iter().map(Ok));
        Incoming::start(stream, max, Duration::from_secs(5))
            .await?
            .finish()
            .await
    }

    #[tokio::test]
    async fn a_payload_comes_back_whole_in_chunks_of_at_most_one_mib() {
        let data: Vec<u8> = (0..CHUNK_BYTES * 2 + 7).map(|i| (i * 31) as u8).collect();
        let pieces: Vec<pb::FilesChunk> = chunks(header(), &data);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|c| c.data.len() <= CHUNK_BYTES));
        assert!(pieces[0].header.is_some() && pieces[1..].iter().all(|c| c.header.is_none()));
        let (h, back) = receive(pieces, u64::MAX).await.unwrap();
        assert_eq!(back, data);
        assert_eq!((h.bytes, h.sweep_id.as_str()), (data.len() as u64, "s"));
        // Nothing at all is one chunk with the header.
        let empty: Vec<pb::FilesChunk> = chunks(header(), &[]);
        assert_eq!(empty.len(), 1);
        assert_eq!(receive(empty, 0).await.unwrap().1, Vec::<u8>::new());
    }

    #[tokio::test]
    async fn every_broken_promise_is_refused_with_its_reason() {
        let data = vec![7u8; 100];
        let good = || chunks::<pb::FilesChunk>(header(), &data);
        let e = receive(good(), 99).await.unwrap_err();
        assert!(e.contains("100 bytes; at most 99"), "{e}");
        let e = receive(Vec::new(), 1000).await.unwrap_err();
        assert!(e.contains("ended before its header"), "{e}");
        let mut p = good();
        p[0].header = None;
        let e = receive(p, 1000).await.unwrap_err();
        assert!(e.contains("no header"), "{e}");
        let mut p = good();
        p.push(pb::FilesChunk::new(Some(header()), vec![]));
        let e = receive(p, 1000).await.unwrap_err();
        assert!(e.contains("a second header"), "{e}");
        let mut p = good();
        p.push(pb::FilesChunk::new(None, vec![1]));
        let e = receive(p, 1000).await.unwrap_err();
        assert!(e.contains("more than the 100 bytes"), "{e}");
        let mut p = good();
        p[0].data.truncate(60);
        let e = receive(p, 1000).await.unwrap_err();
        assert!(e.contains("60 bytes came of the 100"), "{e}");
        let mut p = good();
        p[0].data[5] ^= 1;
        let e = receive(p, 1000).await.unwrap_err();
        assert!(e.contains("SHA-256"), "{e}");
    }

    #[tokio::test]
    async fn a_sender_that_goes_quiet_is_given_up_on() {
        let stream = tokio_stream::pending::<Result<pb::FilesChunk, tonic::Status>>();
        let e = Incoming::start(stream, 10, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(e.contains("no chunk came within"), "{e}");
    }
}
