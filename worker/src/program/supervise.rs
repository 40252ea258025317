//! The supervisor between a worker and a trial's program, so that the program's whole process
//! tree ends with its trial — shell wrappers' background jobs, `torchrun`'s ranks, DataLoader
//! and multiprocessing workers, even a `setsid` daemon — however the trial ends, the worker's
//! own SIGKILL included. It needs no root and no cgroup.
//!
//! The worker starts its own binary (`worker` or `coordinator`, both call [`run_if_asked`]
//! first) as `BINARY --sweep-supervise FD PROGRAM ARGS…`. The supervisor makes itself a child
//! subreaper (`PR_SET_CHILD_SUBREAPER`: every orphaned descendant is re-parented to it, not to
//! init, whatever session or group it made), starts the program, and then:
//! - reads FD, the lifeline: `T` sends SIGTERM to every descendant, `K` SIGKILL; end of file
//!   (the worker is gone, SIGKILL included) kills every descendant and exits;
//! - when the program exits, kills whatever it left behind, waits for all of it, and exits as
//!   the program did (its code, or its signal).
//!
//! SIGTERM, SIGINT and SIGHUP sent to the supervisor itself (a job scheduler signalling the
//! whole group) only reach the descendants through the program's own group; the supervisor
//! stays to clean up.

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::time::Duration;

/// The first argument that makes a binary the supervisor.
pub const FLAG: &str = "--sweep-supervise";

/// If this process was started as a supervisor (`FLAG FD PROGRAM ARGS…`), supervises and
/// exits; otherwise returns at once. Both binaries call it before anything else.
pub fn run_if_asked() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(FLAG)) {
        return;
    }
    let fd: Option<RawFd> = args.next().and_then(|a| a.to_str()?.parse().ok());
    let argv: Vec<OsString> = args.collect();
    let (Some(fd), false) = (fd, argv.is_empty()) else {
        eprintln!("usage: {FLAG} FD PROGRAM [ARGS…] (started by the worker, not by hand)");
        std::process::exit(2);
    };
    supervise(fd, &argv)
}

extern "C" fn noted(_: libc::c_int) {}

fn supervise(lifeline: RawFd, argv: &[OsString]) -> ! {
    // SAFETY: prctl, fcntl and sigaction on this process with valid arguments; the handler
    // does nothing (a handled signal is reset to its default in the program by exec).
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
        libc::fcntl(lifeline, libc::F_SETFD, libc::FD_CLOEXEC);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = noted as *const () as usize;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            // The program dies with its supervisor, should the supervisor itself be killed.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let program = match cmd.spawn() {
        Ok(c) => c.id() as libc::pid_t,
        Err(e) => {
            eprintln!("cannot start {:?}: {e}", argv[0]);
            // 127: what a shell says of a command it cannot run.
            std::process::exit(127);
        }
    };
    let mut status: Option<libc::c_int> = None;
    loop {
        reap(program, &mut status);
        if status.is_some() {
            // The program is done: whatever it left behind goes with it.
            end_all(libc::SIGKILL);
            break;
        }
        match read_lifeline(lifeline, Duration::from_millis(100)) {
            Lifeline::Quiet => {}
            Lifeline::Say(b'T') => signal_all(libc::SIGTERM),
            Lifeline::Say(b'K') => signal_all(libc::SIGKILL),
            Lifeline::Say(_) => {}
            Lifeline::Gone => {
                // The worker is gone: so is everything it started.
                end_all(libc::SIGKILL);
                reap(program, &mut status);
                break;
            }
        }
    }
    exit_as(status.unwrap_or(libc::SIGKILL))
}

enum Lifeline {
    Quiet,
    Say(u8),
    Gone,
}

fn read_lifeline(fd: RawFd, wait: Duration) -> Lifeline {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd; read into a one-byte buffer this function owns.
    unsafe {
        let n = libc::poll(&mut p, 1, wait.as_millis() as libc::c_int);
        if n <= 0 {
            return Lifeline::Quiet;
        }
        let mut b = 0u8;
        match libc::read(fd, (&mut b as *mut u8).cast(), 1) {
            1 => Lifeline::Say(b),
            0 => Lifeline::Gone,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
                Lifeline::Quiet
            }
            _ => Lifeline::Gone,
        }
    }
}

/// Reaps every child that has ended; the program's wait status into `status`.
fn reap(program: libc::pid_t, status: &mut Option<libc::c_int>) {
    loop {
        let mut st = 0;
        // SAFETY: waitpid with a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if pid == program {
            *status = Some(st);
        }
    }
}

/// Every living descendant of this process, from /proc (as a subreaper, every one is below it).
fn descendants() -> Vec<libc::pid_t> {
    let me = std::process::id() as libc::pid_t;
    let mut parent_of: Vec<(libc::pid_t, libc::pid_t)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The fields after the command name, which is in parentheses and may hold spaces.
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![me];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

fn signal_all(sig: libc::c_int) {
    for pid in descendants() {
        // SAFETY: kill with a pid found under this process.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Sends `sig` to every descendant and waits for all of them, again and again until none is
/// left (one that forks meanwhile is found on the next round).
fn end_all(sig: libc::c_int) {
    loop {
        signal_all(sig);
        let mut st = 0;
        // SAFETY: waitpid with a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if pid < 0 {
            // ECHILD: nothing is left below this process.
            return;
        }
        if pid == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Exits as a process with wait status `status` did: its code, or killed by its signal.
fn exit_as(status: libc::c_int) -> ! {
    let st = std::process::ExitStatus::from_raw(status);
    if let Some(code) = st.code() {
        std::process::exit(code);
    }
    let sig = st.signal().unwrap_or(libc::SIGKILL);
    // SAFETY: the default action for `sig`, then `sig` raised on this process.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}
