//! The store under a hostile environment, with real processes: a full disk, a file system gone
//! read-only, a second coordinator on the same store, the store file deleted while serving.
//!
//! The disk tests put the store on a small tmpfs, which needs root (CI runs as root; elsewhere
//! they say why they skip, unless `SWEEP_REQUIRE_ROOT` is set, where they fail). The same disk-full path is
//! also tested without a mount, through SQLite's own size limit, in `coordinator/tests/engine.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sweep_tests::{
    cmd, free_port, leaderboard, n, run, sample, scrape, serve, serve_at, submit, synthetic_grid,
    tempdir, trials, wait_for, worker,
};

/// A tmpfs of a few MiB mounted on a directory; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Tmpfs(dir.to_path_buf()));
        }
        sweep_tests::skip(
            "SWEEP_REQUIRE_ROOT",
            "a_full_disk_loses_nothing_acknowledged_and_the_sweep_carries_on",
            "cannot mount a tmpfs here (needs root)",
        );
        None
    }

    /// Writes a file until the file system is full.
    fn fill(&self) -> PathBuf {
        let p = self.0.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0xa5u8; 16 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// An ext4 file system on a loop device (a file in `dir`), mounted with
/// `errors=remount-ro`; unmounted and detached when dropped.
struct LoopExt4 {
    dev: String,
    mnt: PathBuf,
}

fn sh(args: &[&str]) -> Option<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl LoopExt4 {
    fn new(dir: &Path) -> Option<LoopExt4> {
        let img = dir.join("disk.img");
        std::fs::File::create(&img).ok()?.set_len(32 << 20).ok()?;
        let dev = sh(&["losetup", "-f", "--show", img.to_str()?])?;
        let mnt = dir.join("ext4");
        std::fs::create_dir_all(&mnt).ok()?;
        let fs = LoopExt4 { dev, mnt };
        sh(&["mkfs.ext4", "-q", &fs.dev])?;
        fs.mount()?;
        Some(fs)
    }

    fn mount(&self) -> Option<String> {
        sh(&[
            "mount",
            "-o",
            "errors=remount-ro",
            &self.dev,
            self.mnt.to_str()?,
        ])
    }

    /// What a failing disk does to ext4: an error that turns the file system read-only at
    /// once, open files included.
    fn fail(&self) {
        let name = Path::new(&self.dev).file_name().unwrap().to_str().unwrap();
        std::fs::write(format!("/sys/fs/ext4/{name}/trigger_fs_error"), "1").unwrap();
    }

    /// What an operator does next: unmount, check, mount again.
    fn repair(&self) {
        assert!(
            sh(&["umount", self.mnt.to_str().unwrap()]).is_some(),
            "umount"
        );
        let _ = Command::new("e2fsck").args(["-fy", &self.dev]).output();
        assert!(self.mount().is_some(), "mount after e2fsck");
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// Waits until the `/metrics` at `addr` shows `sweep_store_up` as `up`.
fn wait_store_up(addr: &str, up: bool, timeout: Duration) {
    let end = Instant::now() + timeout;
    loop {
        let v = sample(&scrape(addr), "sweep_store_up");
        if (v == 1.0) == up {
            return;
        }
        assert!(Instant::now() < end, "sweep_store_up never became {up}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `coordinator pause` while the store refuses writes: a failure that names the cause (one of
/// `causes`), and not "cannot reach".
fn pause_fails(url: &str, id: &str, causes: &[&str]) {
    let out = run("coordinator", &["pause", id, "--coordinator", url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "pause was accepted: {err}");
    assert!(causes.iter().any(|c| err.contains(c)), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
}

#[test]
fn a_full_disk_loses_nothing_acknowledged_and_the_sweep_carries_on() {
    let dir = tempdir("diskfull");
    let Some(fs) = Tmpfs::mount(&dir.join("mnt"), "4m") else {
        return;
    };
    let store = fs.0.join("s.db");
    let metrics = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["--lease-ttl", "3", "--metrics-listen", metrics.as_str()];
    let (mut coord, url) = serve_at(&listen, &store, &args);
    let points = 40;
    let id = submit(&dir, &url, &synthetic_grid(points, 5, 60));
    let _w = worker(&url, 2);
    wait_for(&url, &id, Duration::from_secs(120), "5 finished", |v| {
        n(v, "finished") >= 5
    });

    // The disk fills while trials report and complete.
    let filler = fs.fill();
    wait_store_up(&metrics, false, Duration::from_secs(60));
    pause_fails(&url, &id, &["database or disk is full"]);
    std::thread::sleep(Duration::from_secs(2));
    std::fs::remove_file(&filler).unwrap();
    // Space is back: the coordinator carries on by itself; the refused pause left no trace.
    wait_store_up(&metrics, true, Duration::from_secs(120));
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "more trials, not paused",
        |v| n(v, "finished") >= 10 && v["state"] != "paused",
    );

    wait_for(
        &url,
        &id,
        Duration::from_secs(300),
        "the sweep to finish",
        |v| v["state"] == "finished",
    );
    // Nothing acknowledged is missing after a SIGKILL and a restart on the same store.
    coord.kill9();
    let (_coord, url) = serve_at(&listen, &store, &[]);
    let t = trials(&leaderboard(&url, &id));
    assert_eq!(t.len(), points, "{t:?}");
    assert!(
        t.values()
            .all(|(state, _, loss)| state == "finished" && loss.is_some()),
        "{t:?}"
    );
    wait_for(&url, &id, Duration::from_secs(30), "finished", |v| {
        v["state"] == "finished" && n(v, "finished") == points as u64
    });
}

/// Starts `coordinator serve --store STORE` in `cwd` and waits for it to exit; its stderr.
/// Panics if it keeps running or exits successfully.
fn refused(store: &Path, cwd: &Path) -> String {
    let mut second = cmd("coordinator")
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = second.kill();
            panic!(
                "a second coordinator on the same store ({}) kept running",
                store.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{}: {err}", store.display());
    assert!(err.contains(&store.display().to_string()), "{err}");
    err
}

/// A bind mount of `from` on `to`; unmounted when dropped.
struct Bind(PathBuf);

impl Bind {
    fn new(from: &Path, to: &Path) -> Option<Bind> {
        std::fs::create_dir_all(to).ok()?;
        sh(&["mount", "--bind", from.to_str()?, to.to_str()?])?;
        Some(Bind(to.to_path_buf()))
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_second_coordinator_on_one_store_is_refused_until_the_first_is_gone() {
    let dir = tempdir("twocoords");
    let store = dir.join("s.db");
    let (mut first, url) = serve(&store, &[]);
    let id = submit(&dir, &url, &synthetic_grid(3, 2, 10));
    let holder = format!("in use by another coordinator pid {}", first.0.id());
    let err = refused(&store, &dir);
    assert!(err.contains(&holder), "{err}");

    // The same file by every other path that reaches it: the lock is on the file itself.
    let link = dir.join("link.db");
    std::os::unix::fs::symlink(&store, &link).unwrap();
    let err = refused(&link, &dir);
    assert!(err.contains(&holder), "{err}");
    let err = refused(Path::new("./s.db"), &dir);
    assert!(err.contains(&holder), "{err}");
    let err = refused(Path::new("s.db"), &dir);
    assert!(err.contains(&holder), "{err}");
    let hard = dir.join("hard.db");
    std::fs::hard_link(&store, &hard).unwrap();
    let err = refused(&hard, &dir);
    assert!(err.contains(&holder), "{err}");
    let test = "a_second_coordinator_on_one_store_is_refused_until_the_first_is_gone (bind mount)";
    if sweep_tests::root_or_skip(test, "a bind mount") {
        let bind = Bind::new(&dir, &dir.with_extension("bind")).expect("mount --bind as root");
        let err = refused(&bind.0.join("s.db"), &dir);
        assert!(err.contains(&holder), "{err}");
    }

    // The holder dies without a word (SIGKILL): the lock goes with it. A file with a second
    // name is still refused, by either name: each would keep a write-ahead log of its own.
    first.kill9();
    for name in [&store, &hard] {
        let err = refused(name, &dir);
        assert!(err.contains("has 2 hard links"), "{err}");
    }
    std::fs::remove_file(&hard).unwrap();
    // Started by its symlink, the coordinator has the same sweep (the same database and log).
    let (_again, url) = serve(&link, &[]);
    wait_for(&url, &id, Duration::from_secs(30), "the sweep", |v| {
        v["state"] == "running"
    });
}

#[test]
fn a_deleted_store_file_is_noticed_and_nothing_more_is_acknowledged() {
    let dir = tempdir("deleted");
    let store = dir.join("s.db");
    let metrics = format!("127.0.0.1:{}", free_port());
    let (_coord, url) = serve(&store, &["--metrics-listen", metrics.as_str()]);
    let id = submit(&dir, &url, &synthetic_grid(3, 2, 10));
    wait_store_up(&metrics, true, Duration::from_secs(30));
    std::fs::remove_file(&store).unwrap();
    wait_store_up(&metrics, false, Duration::from_secs(60));
    pause_fails(
        &url,
        &id,
        &["was deleted while the coordinator was using it"],
    );
    // A new sweep is refused too: nothing is acknowledged that could not be kept.
    let cfg = dir.join("again.yaml");
    std::fs::write(&cfg, synthetic_grid(2, 1, 1)).unwrap();
    let out = run(
        "coordinator",
        &[
            "submit",
            cfg.to_str().unwrap(),
            "--coordinator",
            url.as_str(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("was deleted"),
        "{err}"
    );
    // And it leaves no ghost: the coordinator lists the one sweep it kept.
    let out = run(
        "coordinator",
        &["status", "--json", "--coordinator", url.as_str()],
    );
    let listed = sweep_tests::json_out(&out);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
}

#[test]
fn a_store_file_system_gone_read_only_is_refused_with_its_cause_and_the_sweep_finishes_after_repair(
) {
    let dir = tempdir("readonly");
    // Loop devices are not everywhere (a container may have none): then say so and pass.
    let Some(fs) = LoopExt4::new(&dir) else {
        sweep_tests::skip(
            "SWEEP_REQUIRE_ROOT",
            "a_store_file_system_gone_read_only_is_refused_with_its_cause_and_the_sweep_finishes_after_repair",
            "cannot make an ext4 file system on a loop device here (needs root and a loop device)",
        );
        return;
    };
    let store = fs.mnt.join("s.db");
    let metrics = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["--lease-ttl", "3", "--metrics-listen", metrics.as_str()];
    let (mut coord, url) = serve_at(&listen, &store, &args);
    let points = 40;
    let id = submit(&dir, &url, &synthetic_grid(points, 5, 60));
    let _w = worker(&url, 2);
    wait_for(&url, &id, Duration::from_secs(120), "5 finished", |v| {
        n(v, "finished") >= 5
    });
    // What the kernel had written back survives the failure; what it had not is lost as in a
    // power cut (the store commits with synchronous = NORMAL): write everything back first, so
    // the sweep itself is on the disk when it fails.
    assert!(sh(&["sync"]).is_some());
    fs.fail();
    wait_store_up(&metrics, false, Duration::from_secs(60));
    pause_fails(&url, &id, &["readonly", "read-only", "disk I/O error"]);
    // The operator stops the coordinator, repairs the file system and starts it again: the
    // sweep finishes, every trial once (any not yet written back is run again).
    coord.kill9();
    fs.repair();
    let (_coord, url) = serve_at(&listen, &store, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(300),
        "the sweep to finish",
        |v| v["state"] == "finished",
    );
    let t = trials(&leaderboard(&url, &id));
    assert_eq!(t.len(), points, "{t:?}");
    assert!(
        t.values()
            .all(|(state, _, loss)| state == "finished" && loss.is_some()),
        "{t:?}"
    );
}
