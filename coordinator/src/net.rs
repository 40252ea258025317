//! What the coordinator's listeners accept: at most so many connections at once and so many
//! from one address, each of which must say something within a few seconds and keep showing
//! signs of life (a connection idle too long is cut; at the cap, the idlest makes room for a
//! newcomer), and accept errors (out of file descriptors) that back off instead of spinning.
//! gRPC and the HTTP port both take their connections here.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

/// A new connection must send its first bytes (the HTTP/2 preface, a request line, a TLS
/// hello) within this time, or it is closed.
pub const FIRST_BYTES_WITHIN: Duration = Duration::from_secs(10);
/// How many bytes count as "its first bytes": the HTTP/2 preface's length.
const FIRST_BYTES: usize = 24;

/// What a listener holds to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more wait in the kernel's backlog, unless an idle one makes
    /// room.
    pub cap: usize,
    /// Connections open at once from one IP address; a newcomer over it takes the place of
    /// that address's idlest connection, or is closed at once.
    pub per_address: usize,
    /// A connection with no sign of life for this long is cut.
    pub idle: Duration,
    /// At a cap, a connection idle this long gives its place to a newcomer.
    pub evict_after: Duration,
    /// Whether bytes written to the peer count as a sign of life (the HTTP port: an event
    /// stream only writes), or only bytes read from it (gRPC: the server's keepalive pings,
    /// every 20 s, are answered by every live client).
    pub writes_count: bool,
}

/// The gRPC port: workers and clients, each multiplexing its calls on one connection.
pub const GRPC: Limits = Limits {
    cap: 4096,
    per_address: 256,
    idle: Duration::from_secs(60),
    evict_after: Duration::from_secs(10),
    writes_count: false,
};

/// The dashboard port: each open page holds one or two connections; an event stream writes
/// at least every 15 s.
pub const HTTP: Limits = Limits {
    cap: 1024,
    per_address: 128,
    idle: Duration::from_secs(60),
    evict_after: Duration::from_secs(10),
    writes_count: true,
};

/// What a connection shares with its listener: when it last showed life, and the order to end.
#[derive(Debug)]
struct Life {
    addr: IpAddr,
    /// Milliseconds since the listener's start at the last sign of life.
    last: AtomicU64,
    cut: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Life {
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Some(w) = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            w.wake();
        }
    }
}

/// The open connections of one listener.
#[derive(Debug)]
struct Registry {
    start: Instant,
    limits: Limits,
    open: Mutex<Open>,
    /// Told when a connection closes.
    freed: Notify,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    conns: HashMap<u64, Arc<Life>>,
    per_address: HashMap<IpAddr, usize>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cuts the connection (of `addr`, or any) that has been idle longest, if that is at
    /// least `after`; whether one was cut.
    fn evict(&self, addr: Option<IpAddr>, after: Duration) -> bool {
        let now = self.now_ms();
        let open = self.open();
        let idlest = open
            .conns
            .values()
            .filter(|l| addr.is_none_or(|a| l.addr == a) && !l.cut.load(Ordering::SeqCst))
            .min_by_key(|l| l.last.load(Ordering::Relaxed));
        match idlest {
            Some(l)
                if now.saturating_sub(l.last.load(Ordering::Relaxed))
                    >= after.as_millis() as u64 =>
            {
                l.cut();
                true
            }
            _ => false,
        }
    }

    /// Cuts every connection idle for the listener's `idle` or longer.
    fn sweep(&self) {
        let now = self.now_ms();
        let idle = self.limits.idle.as_millis() as u64;
        for l in self.open().conns.values() {
            if now.saturating_sub(l.last.load(Ordering::Relaxed)) >= idle {
                l.cut();
            }
        }
    }
}

/// An accepted connection: its place under the caps is freed when it is dropped.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    registry: Arc<Registry>,
    id: u64,
    life: Arc<Life>,
    /// Bytes still owed before the deadline is lifted, and the deadline.
    owed: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut open = self.registry.open();
        open.conns.remove(&self.id);
        if let Some(n) = open.per_address.get_mut(&self.life.addr) {
            *n -= 1;
            if *n == 0 {
                open.per_address.remove(&self.life.addr);
            }
        }
        drop(open);
        self.registry.freed.notify_waiters();
    }
}

impl Conn {
    /// The peer's address, for logs.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }

    fn alive(&self) {
        self.life
            .last
            .store(self.registry.now_ms(), Ordering::Relaxed);
    }

    /// A write that moved bytes is a sign of life where writes count.
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        if self.registry.limits.writes_count && matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.alive();
        }
    }

    /// `Err` once the listener has cut this connection; otherwise remembers who to wake.
    fn check_cut(&self, cx: &Context<'_>) -> io::Result<()> {
        let cut = || {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the connection was idle too long (or gave its place to a newcomer)",
            )
        };
        if self.life.cut.load(Ordering::SeqCst) {
            return Err(cut());
        }
        let mut w = self
            .life
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        drop(w);
        // Cut between the check and the waker's registration: seen now.
        if self.life.cut.load(Ordering::SeqCst) {
            return Err(cut());
        }
        Ok(())
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_cut(cx)?;
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
        let got = buf.filled().len() - before;
        if got > 0 {
            self.alive();
        }
        if self.deadline.is_some() {
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
        self.check_cut(cx)?;
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(&r);
        r
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
        self.check_cut(cx)?;
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
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

/// Accepts connections on `listener` within `limits` (see [`Limits`]), backing off from 50 ms
/// to 1 s while accept fails. Ends, closing the listener, when the receiver is dropped.
pub fn incoming(listener: TcpListener, limits: Limits) -> mpsc::Receiver<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(16);
    let registry = Arc::new(Registry {
        start: Instant::now(),
        limits,
        open: Mutex::default(),
        freed: Notify::new(),
    });
    // The idle sweep, as long as the listener lives.
    let sweeper = {
        let registry = Arc::downgrade(&registry);
        let every = (limits.idle / 4).max(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match registry.upgrade() {
                    Some(r) => r.sweep(),
                    None => return,
                }
            }
        })
    };
    tokio::spawn(async move {
        let _sweeper = AbortOnDrop(sweeper);
        let mut pause = Duration::from_millis(50);
        loop {
            // Room under the cap: a free place, or the idlest connection's.
            loop {
                let freed = registry.freed.notified();
                if registry.open().conns.len() < limits.cap
                    || registry.evict(None, limits.evict_after)
                {
                    break;
                }
                tokio::select! {
                    () = freed => {}
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    () = tx.closed() => return,
                }
            }
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    pause = Duration::from_millis(50);
                    let addr = peer.ip();
                    let crowded = registry.open().per_address.get(&addr).copied().unwrap_or(0)
                        >= limits.per_address;
                    if crowded && !registry.evict(Some(addr), limits.evict_after) {
                        tracing::debug!(%addr, "connection refused: too many from one address");
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let life = Arc::new(Life {
                        addr,
                        last: AtomicU64::new(registry.now_ms()),
                        cut: AtomicBool::new(false),
                        waker: Mutex::new(None),
                    });
                    let id = {
                        let mut open = registry.open();
                        open.next += 1;
                        let id = open.next;
                        open.conns.insert(id, life.clone());
                        *open.per_address.entry(addr).or_default() += 1;
                        id
                    };
                    let conn = Conn {
                        stream,
                        registry: registry.clone(),
                        id,
                        life,
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
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    });
    rx
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
        let mut rx = incoming(l, Limits { cap: 1, ..GRPC });
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

    fn limits(cap: usize, per_address: usize, idle_ms: u64, evict_ms: u64) -> Limits {
        Limits {
            cap,
            per_address,
            idle: Duration::from_millis(idle_ms),
            evict_after: Duration::from_millis(evict_ms),
            writes_count: false,
        }
    }

    /// A connection to `to` from the loopback address `from`, which sends the preface's worth
    /// of bytes.
    async fn client(from: &str, to: std::net::SocketAddr) -> TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut c = s.connect(to).await.unwrap();
        c.write_all(&[b'P'; FIRST_BYTES]).await.unwrap();
        c
    }

    /// Whether the server closed `c` (a read gives end of file or a reset).
    async fn closed(c: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(30), c.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_place() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // Evicting needs an hour of idleness here: the third from one address is turned away.
        let mut rx = incoming(l, limits(100, 2, 3_600_000, 3_600_000));
        let mut held = Vec::new();
        for _ in 0..2 {
            let _c = client("127.0.0.2", addr).await;
            held.push((_c, rx.recv().await.unwrap().unwrap()));
        }
        let mut third = client("127.0.0.2", addr).await;
        assert!(
            closed(&mut third).await,
            "a third connection from one address was kept"
        );
        // Another address is served.
        let _other = client("127.0.0.3", addr).await;
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.peer().unwrap().ip().to_string(), "127.0.0.3");
    }

    #[tokio::test]
    async fn an_idle_connection_is_cut_and_a_talking_one_is_not() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut rx = incoming(l, limits(100, 100, 1_000, 3_600_000));
        let _quiet = client("127.0.0.1", addr).await;
        let mut quiet = rx.recv().await.unwrap().unwrap();
        let mut talking = client("127.0.0.1", addr).await;
        let mut server_side = rx.recv().await.unwrap().unwrap();
        // The server side reads as a server does, all the time; the client says something
        // every 100 ms, for three idle periods.
        let reader = tokio::spawn(async move {
            let mut got = 0usize;
            let mut b = [0u8; 64];
            loop {
                match server_side.read(&mut b).await {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got += n,
                }
            }
        });
        for _ in 0..30 {
            talking.write_all(b"ping").await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let e = read_until_cut(&mut quiet).await;
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        drop(talking);
        // Everything the talking one sent came through, and it ended only when its client
        // closed it.
        assert_eq!(reader.await.unwrap(), FIRST_BYTES + 120);
    }

    /// Reads `c` until it fails; the error.
    async fn read_until_cut(c: &mut Conn) -> io::Error {
        let mut b = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(30), c.read(&mut b))
                .await
                .expect("the connection is cut")
            {
                Ok(0) => panic!("end of file instead of a cut"),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }

    #[tokio::test]
    async fn at_the_cap_the_idlest_connection_makes_room() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut rx = incoming(l, limits(2, 100, 3_600_000, 200));
        let _a = client("127.0.0.2", addr).await;
        let mut old = rx.recv().await.unwrap().unwrap();
        let mut b_client = client("127.0.0.3", addr).await;
        let mut b = rx.recv().await.unwrap().unwrap();
        // b keeps talking; a (older, and silent since its preface) is the idlest.
        let talk = tokio::spawn(async move {
            for _ in 0..20 {
                if b_client.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            b_client
        });
        let mut drain = [0u8; 64];
        let reader = tokio::spawn(async move {
            while let Ok(n) = b.read(&mut drain).await {
                if n == 0 {
                    break;
                }
            }
        });
        let _newcomer = client("127.0.0.4", addr).await;
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a newcomer is let in at the cap")
            .unwrap()
            .unwrap();
        assert_eq!(got.peer().unwrap().ip().to_string(), "127.0.0.4");
        let e = read_until_cut(&mut old).await;
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        let _ = talk.await;
        reader.abort();
    }
}
