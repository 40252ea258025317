//! A large payload on the wire (a checkpoint, a trial's files): split into chunks behind a
//! header that gives its length and SHA-256, and put back together with every check (header
//! first, bounded length, the length and digest it announced, a deadline for each chunk).
//! Whoever receives one (the coordinator: SaveCheckpoint, SaveFiles; a worker: GetCheckpoint;
//! a person: GetFiles) uses [`Incoming`].

use std::sync::Arc;
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

/// `data` as chunks, made one at a time as they are sent (never a second copy of the whole
/// payload): the first carries `header`, its length and SHA-256 filled in here. A clone starts
/// again from the first chunk (a retry) and shares the bytes.
pub fn chunks<C: Chunk>(mut header: C::Header, data: Arc<Vec<u8>>) -> Chunks<C> {
    C::set_totals(&mut header, data.len() as u64, digest(&data));
    Chunks {
        header: Some(header),
        data,
        at: 0,
    }
}

/// The chunks of one payload; see [`chunks`].
pub struct Chunks<C: Chunk> {
    header: Option<C::Header>,
    data: Arc<Vec<u8>>,
    at: usize,
}

impl<C: Chunk> std::fmt::Debug for Chunks<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunks")
            .field("bytes", &self.data.len())
            .field("at", &self.at)
            .finish()
    }
}

impl<C: Chunk> Clone for Chunks<C> {
    fn clone(&self) -> Self {
        Chunks {
            header: self.header.clone(),
            data: self.data.clone(),
            at: self.at,
        }
    }
}

impl<C: Chunk> Iterator for Chunks<C> {
    type Item = C;
    fn next(&mut self) -> Option<C> {
        // An empty payload is one chunk: the header alone.
        if self.at >= self.data.len() && self.header.is_none() {
            return None;
        }
        let end = (self.at + CHUNK_BYTES).min(self.data.len());
        let piece = self.data[self.at..end].to_vec();
        self.at = end;
        Some(C::new(self.header.take(), piece))
    }
}

/// The least a sender must deliver within each stall window (or the rest of its payload, if
/// that is less): a trickle below it holds the receiver's memory for nothing and is cut.
pub const MIN_PROGRESS_BYTES: usize = 64 * 1024;

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
    next_by(stream, tokio::time::Instant::now() + wait, || {
        format!("no chunk came within {:.1} s", wait.as_secs_f64())
    })
    .await
}

async fn next_by<C, S>(
    stream: &mut S,
    deadline: tokio::time::Instant,
    late: impl FnOnce() -> String,
) -> Result<Option<C>, String>
where
    S: Stream<Item = Result<C, tonic::Status>> + Unpin,
{
    match tokio::time::timeout_at(deadline, stream.next()).await {
        Err(_) => Err(late()),
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
    /// Reads the header (the first chunk); refuses a payload longer than `max` bytes. The
    /// header must come within `wait`, and then, within every `wait`, at least
    /// [`MIN_PROGRESS_BYTES`] (or the rest): a sender that stalls or trickles is cut.
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
        // The current stall window: when it ends and how much had come when it began.
        let mut window = (tokio::time::Instant::now() + self.wait, 0usize);
        loop {
            if data.len() + chunk.len() > want {
                return Err(format!("more than the {want} bytes announced"));
            }
            data.extend_from_slice(&chunk);
            let progress = MIN_PROGRESS_BYTES.min(want - window.1);
            if data.len() - window.1 >= progress {
                window = (tokio::time::Instant::now() + self.wait, data.len());
            }
            let (wait, have) = (self.wait, data.len());
            let late = || {
                format!(
                    "stalled: fewer than {} bytes came in {:.1} s ({have} of {want} so far)",
                    MIN_PROGRESS_BYTES,
                    wait.as_secs_f64()
                )
            };
            match next_by(&mut self.stream, window.0, late).await? {
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
        let pieces: Vec<pb::FilesChunk> = chunks(header(), Arc::new(data.clone())).collect();
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|c| c.data.len() <= CHUNK_BYTES));
        assert!(pieces[0].header.is_some() && pieces[1..].iter().all(|c| c.header.is_none()));
        let (h, back) = receive(pieces, u64::MAX).await.unwrap();
        assert_eq!(back, data);
        assert_eq!((h.bytes, h.sweep_id.as_str()), (data.len() as u64, "s"));
        // Nothing at all is one chunk with the header.
        let empty: Vec<pb::FilesChunk> = chunks(header(), Arc::default()).collect();
        assert_eq!(empty.len(), 1);
        assert_eq!(receive(empty, 0).await.unwrap().1, Vec::<u8>::new());
    }

    #[tokio::test]
    async fn every_broken_promise_is_refused_with_its_reason() {
        let data = vec![7u8; 100];
        let good = || -> Vec<pb::FilesChunk> { chunks(header(), Arc::new(data.clone())).collect() };
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
    async fn a_sender_that_trickles_is_cut_after_one_window() {
        let data = vec![3u8; 4 * MIN_PROGRESS_BYTES];
        let mut h = header();
        pb::FilesChunk::set_totals(&mut h, data.len() as u64, digest(&data));
        // One byte every 20 ms: each chunk comes well within the window, the window's
        // progress never does.
        let trickle = tokio_stream::iter(
            std::iter::once(pb::FilesChunk::new(Some(h), Vec::new()))
                .chain(data.iter().map(|b| pb::FilesChunk::new(None, vec![*b])))
                .map(Ok::<_, tonic::Status>),
        )
        .throttle(Duration::from_millis(20));
        let started = std::time::Instant::now();
        let e = Incoming::start(Box::pin(trickle), u64::MAX, Duration::from_millis(300))
            .await
            .unwrap()
            .finish()
            .await
            .unwrap_err();
        assert!(
            e.contains("stalled: fewer than 65536 bytes came in 0.3 s"),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        // Chunks that keep up arrive whole, each window's progress made well within it.
        let data: Vec<u8> = (0..3 * CHUNK_BYTES + 5).map(|i| i as u8).collect();
        let steady = tokio_stream::iter(
            chunks::<pb::FilesChunk>(header(), Arc::new(data.clone())).map(Ok::<_, tonic::Status>),
        )
        .throttle(Duration::from_millis(50));
        let (_, back) = Incoming::start(Box::pin(steady), u64::MAX, Duration::from_millis(300))
            .await
            .unwrap()
            .finish()
            .await
            .unwrap();
        assert_eq!(back, data);
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
