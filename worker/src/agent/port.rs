//! A port kept free for a gang's rank 0 (`program_options.nodes`): a TCP socket bound to an
//! ephemeral port on every interface but never listening, so the port is this worker's and yet
//! nothing answers on it — an idle worker opens no port to the network. Rank 0's worker lets it
//! go just before its program starts and binds it as `MASTER_PORT`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A port this worker holds until dropped.
#[derive(Debug)]
pub(super) struct KeptPort {
    _socket: OwnedFd,
    /// Its number.
    pub port: u16,
}

impl KeptPort {
    /// Binds a fresh ephemeral port on 0.0.0.0 without listening on it.
    pub(super) fn keep() -> io::Result<KeptPort> {
        // SAFETY: socket() has no preconditions; the descriptor it returns is owned here.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and nothing else owns it.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_in is plain data; all zeros is 0.0.0.0, port 0.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: addr is a valid sockaddr_in of `len` bytes for the call's duration.
        let r = unsafe { libc::bind(fd, (&raw const addr).cast(), len) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let mut got: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut got_len = len;
        // SAFETY: got is writable for got_len bytes; getsockname writes at most that many.
        let r = unsafe { libc::getsockname(fd, (&raw mut got).cast(), &mut got_len) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(KeptPort {
            _socket: socket,
            port: u16::from_be(got.sin_port),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_port_is_held_but_answers_nothing_and_is_free_once_dropped() {
        let kept = KeptPort::keep().unwrap();
        assert_ne!(kept.port, 0);
        // Nothing listens on it.
        assert!(std::net::TcpStream::connect(("127.0.0.1", kept.port)).is_err());
        // Another socket cannot take it meanwhile; once let go, a program binds it.
        assert!(std::net::TcpListener::bind(("0.0.0.0", kept.port)).is_err());
        let port = kept.port;
        drop(kept);
        let l = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
        assert_eq!(l.local_addr().unwrap().port(), port);
        assert_ne!(KeptPort::keep().unwrap().port, 0);
    }
}
