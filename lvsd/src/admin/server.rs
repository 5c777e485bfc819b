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
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most admin connections served at once; more wait in the listen queue.
const MAX_CLIENTS: usize = 64;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// another lvsd answers on the socket
    #[error("another lvsd is already listening on {0}")]
    InUse(PathBuf),
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

/// Fails when a daemon answers on `path` (a stale socket file is not one).
pub fn check_free(path: &Path) -> Result<(), ServerError> {
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
    if path.exists() {
        check_free(path)?;
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
    let clients = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        while clients.load(Ordering::Acquire) >= MAX_CLIENTS {
            std::thread::sleep(Duration::from_millis(10));
        }
        clients.fetch_add(1, Ordering::AcqRel);
        let (control, clients) = (control.clone(), clients.clone());
        let spawned = std::thread::Builder::new()
            .name("lvsd-admin".into())
            .spawn(move || {
                if let Err(e) = session(stream, access, &control) {
                    tracing::debug!("admin connection: {e}");
                }
                clients.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            tracing::error!("cannot start an admin connection thread");
        }
    }
}

fn session(stream: UnixStream, access: Access, control: &Mutex<Control>) -> Result<(), FrameError> {
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let may_change = access.may_change(&stream);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let line = match read_line(&mut reader) {
            Ok(l) => l,
            Err(FrameError::Closed) => return Ok(()),
            Err(FrameError::TooLong) => {
                let r = error(ErrorKind::Malformed, "request longer than the limit".into());
                write_message(&mut writer, &r)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let response = answer(&line, may_change, control);
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
