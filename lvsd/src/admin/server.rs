//! The admin socket: a Unix stream socket speaking [`lvsd_proto`].
//!
//! Each connection gets a thread that reads one request line at a time,
//! decodes it, checks the peer (SO_PEERCRED: root, or a member of the admin
//! group, may change things; anyone who can open the socket may read), and
//! hands the operation to [`Control`]. A request that cannot be decoded gets
//! an error naming what was wrong and changes nothing.

use super::Control;
use lvsd_proto::{
    read_line, write_message, ErrorKind, FrameError, Request, Response, PROTOCOL_VERSION,
};
use std::io::{self, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most admin connections served at once, for those who may change the
/// rules and, apart, for those who may only read (so readers cannot keep
/// root out); one more is told so and closed.
const MAX_CLIENTS: usize = 64;
/// How long a connection may sit between requests, or take over one.
const IDLE: Duration = Duration::from_secs(60);

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// another lvsd answers on the socket
    #[error("another lvsd is already listening on {0}")]
    InUse(PathBuf),
    /// something that is not a socket is in the way
    #[error(
        "admin socket {0}: the path exists and is not a socket (lvsd removes only a stale socket)"
    )]
    NotSocket(PathBuf),
    /// the socket could not be created
    #[error("admin socket {path}: {err}")]
    Io { path: PathBuf, err: io::Error },
}

/// Who may change the rules.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub admin_gid: Option<u32>,
}

impl Access {
    fn may_change(&self, stream: &UnixStream) -> bool {
        let Ok(cred) =
            nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        else {
            return false;
        };
        if cred.uid() == 0 {
            return true;
        }
        let Some(gid) = self.admin_gid else {
            return false;
        };
        cred.gid() == gid || in_group(cred.pid(), gid)
    }
}

/// Whether process `pid` has `gid` among its supplementary groups.
fn in_group(pid: i32, gid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

/// Fails when a daemon answers on `path` (a stale socket file is not one),
/// or when something other than a socket is there (lvsd would otherwise
/// replace it).
pub fn check_free(path: &Path) -> Result<(), ServerError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(ServerError::NotSocket(path.to_path_buf()))
        }
        Ok(_) => {}
        Err(_) => return Ok(()),
    }
    if UnixStream::connect(path).is_ok() {
        return Err(ServerError::InUse(path.to_path_buf()));
    }
    Ok(())
}

/// Creates the socket at `path` with `mode`, group-owned by the admin group.
pub fn bind(path: &Path, mode: u32, access: Access) -> Result<UnixListener, ServerError> {
    let io_err = |err| ServerError::Io {
        path: path.to_path_buf(),
        err,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    check_free(path)?;
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    if let Some(gid) = access.admin_gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| io_err(io::Error::from(e)))?;
    }
    Ok(listener)
}

/// Serves forever (the thread ends with the process).
pub fn serve(listener: UnixListener, access: Access, control: Arc<Mutex<Control>>) {
    // Connections of those who may change the rules, and of the others.
    let pools = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let may_change = access.may_change(&stream);
        let clients = pools[usize::from(!may_change)].clone();
        if clients.load(Ordering::Acquire) >= MAX_CLIENTS {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let r = error(
                ErrorKind::Busy,
                format!("lvsd is serving {MAX_CLIENTS} admin connections of this kind; try again"),
            );
            let _ = write_message(&mut stream, &r);
            continue;
        }
        // The slot is given back when the guard drops: at the session's
        // end, if it panics, or here if its thread cannot start.
        let slot = Slot::take(clients);
        let control = control.clone();
        let spawned = std::thread::Builder::new()
            .name("lvsd-admin".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = session(stream, may_change, &control) {
                    tracing::debug!("admin connection: {e}");
                }
            });
        if spawned.is_err() {
            tracing::error!("cannot start an admin connection thread");
        }
    }
}

/// One connection's place in its pool, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(pool: Arc<AtomicUsize>) -> Slot {
        pool.fetch_add(1, Ordering::AcqRel);
        Slot(pool)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The admin socket with a deadline for a whole request (read: within
/// [`IDLE`] of the answer before) or a whole answer (written: within
/// [`ANSWER`]), however the bytes trickle.
struct Timed {
    stream: UnixStream,
    deadline: Instant,
}

impl io::Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no whole request in time",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl io::Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the answer not taken in time",
            ));
        }
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// How long a client may take to read one answer, however large.
const ANSWER: Duration = Duration::from_secs(30);

fn session(
    stream: UnixStream,
    may_change: bool,
    control: &Mutex<Control>,
) -> Result<(), FrameError> {
    // Each answer must be taken whole within ANSWER, however its bytes
    // are read (a write timeout alone restarts with every partial write).
    let mut writer = Timed {
        stream: stream.try_clone()?,
        deadline: Instant::now(),
    };
    let mut reader = BufReader::new(Timed {
        stream,
        deadline: Instant::now() + IDLE,
    });
    loop {
        reader.get_mut().deadline = Instant::now() + IDLE;
        let line = match read_line(&mut reader) {
            Ok(l) => l,
            Err(FrameError::Closed) => return Ok(()),
            Err(FrameError::TooLong(_)) => {
                let r = error(ErrorKind::Malformed, "request longer than the limit".into());
                writer.deadline = Instant::now() + ANSWER;
                write_message(&mut writer, &r)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let response = answer(&line, may_change, control);
        writer.deadline = Instant::now() + ANSWER;
        write_message(&mut writer, &response)?;
    }
}

fn error(kind: ErrorKind, message: String) -> Response {
    Response::Error { kind, message }
}

/// Decodes, checks and runs one request line.
pub fn answer(line: &[u8], may_change: bool, control: &Mutex<Control>) -> Response {
    // Check the version before the shape, so a newer client gets the
    // clearer of the two errors.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
        if let Some(version) = v.get("v").and_then(|v| v.as_u64()) {
            if version != u64::from(PROTOCOL_VERSION) {
                return error(
                    ErrorKind::Version,
                    format!("protocol version {version} is not supported (this lvsd speaks {PROTOCOL_VERSION})"),
                );
            }
        }
    }
    let req: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => return error(ErrorKind::Malformed, format!("malformed request: {e}")),
    };
    if req.op.is_change() && !may_change {
        return error(
            ErrorKind::Permission,
            "permission denied: only root or the admin group may change lvsd".into(),
        );
    }
    match control.lock() {
        Ok(mut c) => c.handle(&req.op),
        Err(poisoned) => poisoned.into_inner().handle(&req.op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvsd_proto::read_message;

    /// A fresh directory for one test's socket.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lvsd-admin-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A file that is not a socket at the admin socket's path is refused
    /// and left as it was (lvsd used to replace it).
    #[test]
    fn a_file_in_the_way_is_kept() {
        let dir = scratch("file");
        let path = dir.join("lvsd.sock");
        std::fs::write(&path, "precious").unwrap();
        let access = Access { admin_gid: None };
        assert!(matches!(check_free(&path), Err(ServerError::NotSocket(_))));
        assert!(matches!(
            bind(&path, 0o660, access),
            Err(ServerError::NotSocket(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        // A stale socket is replaced.
        std::fs::remove_file(&path).unwrap();
        drop(UnixListener::bind(&path).unwrap());
        assert!(bind(&path, 0o660, access).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Idle connections fill their pool; the next one of that kind is told
    /// so at once instead of waiting behind them, and the accept loop goes
    /// on serving.
    #[test]
    fn a_full_pool_answers_busy() {
        let dir = scratch("busy");
        let path = dir.join("lvsd.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let control = Arc::new(Mutex::new(super::super::tests::control()));
        let access = Access { admin_gid: None };
        std::thread::spawn(move || serve(listener, access, control));
        let idle: Vec<UnixStream> = (0..MAX_CLIENTS)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        // Bounded: the extra connection's answer comes at once or the read
        // times out.
        let extra = UnixStream::connect(&path).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let r: Response = read_message(&mut BufReader::new(extra)).unwrap();
        assert!(
            matches!(
                &r,
                Response::Error {
                    kind: ErrorKind::Busy,
                    ..
                }
            ),
            "{r:?}"
        );
        drop(idle);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
