//! Running a command with a time limit, and finding the workspace's
//! binaries: shared by the namespace lab (`tests/support`) and the image
//! tests (`tests/image_support`).

use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Runs a command with stdin closed and its output captured, killing it if
/// it runs longer than `timeout` (a note is then appended to its stderr).
pub fn run_bounded(mut c: Command, timeout: Duration) -> io::Result<Output> {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn()?;
    let (tx, rx) = mpsc::channel();
    let mut readers = 0;
    for (is_err, pipe) in [
        (
            false,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            true,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        if let Some(mut pipe) = pipe {
            let tx = tx.clone();
            readers += 1;
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send((is_err, buf));
            });
        }
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    // A grandchild holding a pipe open must not hang us: bounded collection.
    let collect_deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..readers {
        let left = collect_deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((false, b)) => stdout = b,
            Ok((true, b)) => stderr = b,
            Err(_) => break,
        }
    }
    if timed_out {
        stderr.extend_from_slice(format!("\n[killed after {timeout:?}]\n").as_bytes());
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// stdout of a successful command, or an error naming it with its stderr.
pub fn check(what: &str, out: Output) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end()
        )
        .into())
    }
}

/// Where cargo puts the workspace binary `name` for this test build: next to
/// the test binary's `deps/` directory (`target/<profile>/NAME`).
pub fn built_bin(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| io::Error::other("the test binary has no directory"))?;
    if dir.ends_with("deps") {
        dir = dir
            .parent()
            .ok_or_else(|| io::Error::other("deps/ has no parent"))?;
    }
    Ok(dir.join(name))
}
