//! The admin-socket client: one request, one response, JSON lines.

use lvsd_proto::{read_message, write_message, FrameError, Op, Request, Response};
use std::fmt;
use std::io::{self, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the socket when --socket is not given.
pub const SOCKET_ENV: &str = "LVSD_SOCKET";

/// How long lvsd may take to answer before lvsadm gives up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// The socket to use: --socket, else $LVSD_SOCKET, else lvsd's default.
pub fn socket_path(option: Option<&str>, env: Option<std::ffi::OsString>) -> PathBuf {
    match option {
        Some(path) => PathBuf::from(path),
        None => env
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(lvsd_proto::DEFAULT_SOCKET), PathBuf::from),
    }
}

/// Why talking to lvsd failed.
#[derive(Debug)]
pub enum ClientError {
    /// No connection could be made.
    Connect { path: PathBuf, source: io::Error },
    /// The connection broke, timed out or carried garbage.
    Exchange { path: PathBuf, source: FrameError },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { path, source } => write!(
                f,
                "lvsadm: cannot reach lvsd at {}: {source} (is lvsd running?)",
                path.display()
            ),
            ClientError::Exchange {
                path,
                source: FrameError::Io(e),
            } if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
            {
                write!(
                    f,
                    "lvsadm: lvsd at {} did not answer within {} s",
                    path.display(),
                    ANSWER_TIMEOUT.as_secs()
                )
            }
            ClientError::Exchange { path, source } => {
                write!(f, "lvsadm: talking to lvsd at {}: {source}", path.display())
            }
        }
    }
}

/// A connection to lvsd.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let connect_error = |source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(ANSWER_TIMEOUT)))
            .map_err(connect_error)?;
        let writer = stream.try_clone().map_err(connect_error)?;
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends `op` and waits for lvsd's answer.
    pub fn call(&mut self, op: Op) -> Result<Response, ClientError> {
        let exchange = |source| ClientError::Exchange {
            path: self.path.clone(),
            source,
        };
        write_message(&mut self.writer, &Request::new(op)).map_err(exchange)?;
        read_message(&mut self.reader).map_err(exchange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_precedence() {
        assert_eq!(
            socket_path(Some("/a.sock"), Some("/b.sock".into())),
            PathBuf::from("/a.sock")
        );
        assert_eq!(
            socket_path(None, Some("/b.sock".into())),
            PathBuf::from("/b.sock")
        );
        assert_eq!(
            socket_path(None, Some("".into())),
            PathBuf::from(lvsd_proto::DEFAULT_SOCKET)
        );
        assert_eq!(
            socket_path(None, None),
            PathBuf::from(lvsd_proto::DEFAULT_SOCKET)
        );
    }

    #[test]
    fn unreachable_socket_message() {
        let path = std::env::temp_dir().join(format!("lvsadm-none-{}.sock", std::process::id()));
        let err = match Client::connect(&path) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("connected to nothing"),
        };
        assert!(
            err.starts_with(&format!(
                "lvsadm: cannot reach lvsd at {}: ",
                path.display()
            )),
            "{err}"
        );
        assert!(err.ends_with(" (is lvsd running?)"), "{err}");
    }
}
