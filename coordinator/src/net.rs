//! What the coordinator's listeners accept: at most so many connections at once, each of
//! which must say something within a few seconds, and accept errors (out of file descriptors)
//! that back off instead of spinning. gRPC and the HTTP port both take their connections here.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Connections the gRPC port holds at once (workers and clients; each multiplexes its calls).
pub const MAX_GRPC_CONNECTIONS: usize = 4096;
/// Connections the dashboard port holds at once (each open page holds one or two).
pub const MAX_HTTP_CONNECTIONS: usize = 1024;
/// A new connection must send its first bytes (the HTTP/2 preface, a request line, a TLS
/// hello) within this time, or it is closed.
pub const FIRST_BYTES_WITHIN: Duration = Duration::from_secs(10);
/// How many bytes count as "its first bytes": the HTTP/2 preface's length.
const FIRST_BYTES: usize = 24;

/// An accepted connection: its slot under the cap is freed when it is dropped.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Bytes still owed before the deadline is lifted, and the deadline.
    owed: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(d) = self.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent too little too slowly",
                )));
            }
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if self.deadline.is_some() {
            let got = buf.filled().len() - before;
            self.owed = self.owed.saturating_sub(got);
            if self.owed == 0 {
                self.deadline = None;
            }
        }
        r
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl Conn {
    /// The peer's address, for logs.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }
}

/// Accepts connections on `listener`, at most `cap` open at once (more wait in the kernel's
/// backlog), backing off from 50 ms to 1 s while accept fails. Ends, closing the listener,
/// when the receiver is dropped.
pub fn incoming(listener: TcpListener, cap: usize) -> mpsc::Receiver<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(cap));
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(50);
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                () = tx.closed() => return,
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    pause = Duration::from_millis(50);
                    let _ = stream.set_nodelay(true);
                    let conn = Conn {
                        stream,
                        _permit: permit,
                        owed: FIRST_BYTES,
                        deadline: Some(Box::pin(tokio::time::sleep(FIRST_BYTES_WITHIN))),
                    };
                    if tx.send(Ok(conn)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "accept failed");
                    drop(permit);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    });
    rx
}

/// Raises this process's limit on open files to its hard limit, so the connection caps, not
/// the descriptor limit, decide how many clients are served.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on this process with a valid, owned struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_connection_is_closed_and_the_cap_holds_the_rest_back() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut rx = incoming(l, 1);
        // The first connection takes the only slot and says nothing.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut first = rx.recv().await.unwrap().unwrap();
        // A second one waits in the backlog while the first holds the slot.
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(&[b'x'; FIRST_BYTES]).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), rx.recv())
                .await
                .is_err(),
            "the cap let a second connection in"
        );
        // The silent one is cut after FIRST_BYTES_WITHIN; its slot goes to the second.
        let mut buf = [0u8; 8];
        let e = tokio::time::timeout(FIRST_BYTES_WITHIN * 3, first.read(&mut buf))
            .await
            .expect("the deadline fires")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(first);
        let mut next = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut got = [0u8; FIRST_BYTES];
        next.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [b'x'; FIRST_BYTES]);
    }
}
