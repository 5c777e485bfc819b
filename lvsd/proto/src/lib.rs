//! The lvsd admin protocol, shared by the daemon and `lvsadm`.
//!
//! Framing: one JSON document per line (`\n`-terminated), UTF-8, at most
//! [`MAX_MESSAGE`] bytes. A client writes a [`Request`] and reads exactly one
//! [`Response`]; a connection may carry any number of such exchanges.
//!
//! Versioning: every request carries [`PROTOCOL_VERSION`] in `v`. The daemon
//! answers a request of another version with [`ErrorKind::Version`] and
//! changes nothing. New operations are added as new [`Op`] variants; an old
//! daemon answers them with [`ErrorKind::Malformed`].
//!
//! This crate has no I/O besides the two small helpers [`write_message`] and
//! [`read_message`], so the CLI does not pull in the data path.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message either side accepts, newline included.
pub const MAX_MESSAGE: usize = 16 << 20;

/// The longest message [`read_message`] takes: the daemon's answers, which
/// grow with the rules and the connection table (about 130 bytes a
/// connection; a million per shard is lvsd's default table).
pub const MAX_REPLY: usize = 1 << 30;

/// Where lvsd listens unless its config says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/lvsd/lvsd.sock";

/// Transport protocol of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number (RFC 790): used for ordering as ipvsadm does.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// "TCP" or "UDP", as ipvsadm prints it.
    pub fn upper(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Identifies a virtual service: protocol and VIP:port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.addr)
    }
}

/// Packet-forwarding method of a destination (ipvsadm's -m, -g, -i).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// NAT, masquerading (-m): "Masq".
    Nat,
    /// Direct routing, gatewaying (-g): "Route".
    Dr,
    /// IP-in-IP tunneling (-i): "Tunnel".
    Tun,
    /// The director itself serves the connection: what IPVS reports for a
    /// destination whose address is one of the director's own ("Local").
    /// Never requested; lvsd reports it.
    Local,
}

impl Method {
    /// The word ipvsadm prints in the Forward column.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            Method::Nat => "Masq",
            Method::Dr => "Route",
            Method::Tun => "Tunnel",
            Method::Local => "Local",
        }
    }

    /// The ipvsadm option that selects this method.
    pub fn ipvsadm_flag(self) -> &'static str {
        match self {
            Method::Nat => "-m",
            Method::Dr => "-g",
            Method::Tun => "-i",
            Method::Local => "-g",
        }
    }
}

/// A virtual service as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    /// Scheduler name: "rr", "wrr", "lc", "wlc".
    pub scheduler: String,
    /// Persistence timeout in seconds, when the service is persistent (-p).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<u32>,
}

/// A real server (destination) of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    /// RIP:port.
    pub addr: SocketAddr,
    /// 0 quiesces the server: no new connections, existing ones carry on.
    pub weight: u32,
    pub method: Method,
    /// Upper connection threshold (-x); 0 means none.
    #[serde(default)]
    pub u_threshold: u32,
    /// Lower connection threshold (-y); 0 means none.
    #[serde(default)]
    pub l_threshold: u32,
}

/// Connection timeouts in seconds (ipvsadm --set tcp tcpfin udp). A zero in
/// a `SetTimeouts` request leaves that value unchanged, as in ipvsadm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

/// One request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Must be [`PROTOCOL_VERSION`].
    pub v: u32,
    pub op: Op,
}

impl Request {
    pub fn new(op: Op) -> Self {
        Request {
            v: PROTOCOL_VERSION,
            op,
        }
    }
}

/// What a request asks for. Operations that change state need an admin peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Daemon version and table sizes.
    Version,
    AddService {
        service: ServiceSpec,
    },
    EditService {
        service: ServiceSpec,
    },
    DeleteService {
        service: ServiceKey,
    },
    /// Remove every service (ipvsadm -C).
    Clear,
    AddDest {
        service: ServiceKey,
        dest: DestSpec,
    },
    /// Replace every field of an existing destination (ipvsadm -e).
    EditDest {
        service: ServiceKey,
        dest: DestSpec,
    },
    DeleteDest {
        service: ServiceKey,
        dest: SocketAddr,
    },
    /// Zero the counters of one service, or of all when `service` is None.
    Zero {
        #[serde(default)]
        service: Option<ServiceKey>,
    },
    /// Services, destinations, counters and rates; one service or all.
    List {
        #[serde(default)]
        service: Option<ServiceKey>,
    },
    /// The connection table of every shard.
    ListConns,
    GetTimeouts,
    SetTimeouts {
        timeouts: Timeouts,
    },
    /// Per-shard frame counters and drops by reason.
    DaemonStats,
    /// Apply all operations as one change: all succeed and are swapped in
    /// together, or none is (ipvsadm -R).
    Batch {
        ops: Vec<Op>,
    },
}

impl Op {
    /// Whether the operation changes state and so needs an admin peer.
    pub fn is_change(&self) -> bool {
        !matches!(
            self,
            Op::Version | Op::List { .. } | Op::ListConns | Op::GetTimeouts | Op::DaemonStats
        )
    }
}

/// The longest timeout, in seconds (31 days, as ipvsadm's limit).
pub const MAX_TIMEOUT: u32 = 86_400 * 31;

/// The message of an error in operation `n` (counted from 1) of a batch.
pub fn batch_error(n: usize, message: &str) -> String {
    format!("operation {n}: {message}")
}

/// Which operation of a batch (counted from 1) a [`batch_error`] message
/// names, and its own message.
pub fn split_batch_error(message: &str) -> Option<(usize, &str)> {
    let rest = message.strip_prefix("operation ")?;
    let (n, msg) = rest.split_once(": ")?;
    Some((n.parse().ok()?, msg))
}

/// Why a request failed. The kinds mirror the errno values the kernel gives
/// ipvsadm, so lvsadm can print ipvsadm's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request could not be decoded.
    Malformed,
    /// The request's protocol version is not [`PROTOCOL_VERSION`].
    Version,
    /// The peer may read but not change (not root, not in the admin group).
    Permission,
    /// The service already exists (EEXIST on add service).
    ServiceExists,
    /// No such service (ESRCH).
    NoService,
    /// The destination already exists (EEXIST on add dest).
    DestExists,
    /// No such destination (ENOENT on edit/delete dest).
    NoDest,
    /// Unknown scheduler (ENOENT on add/edit service).
    NoScheduler,
    /// The request is well formed but not valid (EINVAL).
    Invalid,
    /// Valid, but this lvsd does not implement it yet.
    Unsupported,
    /// lvsd serves as many admin connections as it will; try again.
    Busy,
    /// A kind this side does not know (a newer peer's): the message says
    /// what happened.
    #[serde(other)]
    Unknown,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Error { kind: ErrorKind, message: String },
    Version(VersionInfo),
    Services(Snapshot),
    Conns { conns: Vec<ConnInfo> },
    Timeouts(Timeouts),
    DaemonStats(DaemonStats),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// lvsd's own version.
    pub daemon: String,
    /// Connection table capacity, summed over shards.
    pub conn_table_size: u64,
}

/// Packet and connection counters (ipvsadm --stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

/// Estimated rates per second (ipvsadm --rate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// Everything `-L` can print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Connection table capacity, for the version line.
    pub conn_table_size: u64,
    pub services: Vec<ServiceInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub spec: ServiceSpec,
    pub stats: Stats,
    pub rates: Rates,
    pub dests: Vec<DestInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestInfo {
    /// As listed: a destination at one of the director's own addresses is
    /// `Local` whatever it was added with (IPVS's local node).
    pub spec: DestSpec,
    /// The method the destination was added with, when the listing shows
    /// another (`Local`): what a save must write to restore it exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured: Option<Method>,
    pub active_conns: u32,
    pub inact_conns: u32,
    pub persist_conns: u32,
    pub stats: Stats,
    pub rates: Rates,
}

/// One connection-table entry (ipvsadm -L -c).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    pub protocol: Protocol,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub dest: SocketAddr,
    /// IPVS's state name: "ESTABLISHED", "SYN_RECV", "UDP", ...
    pub state: String,
    /// Milliseconds until the entry expires.
    pub expires_ms: u64,
}

/// Counters of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Of `rx_frames`, those that came through AF_XDP sockets (XDP backend).
    #[serde(default)]
    pub rx_xdp_frames: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames that were not lvsd's to handle and were left to the kernel.
    pub passed: u64,
    /// Connections in this shard's table now.
    pub conns: u64,
    /// Dropped frames by reason; every reason is listed, zero or not.
    pub drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStats {
    /// How frames reach lvsd: "packet", or "xdp" with its mode.
    #[serde(default)]
    pub backend: String,
    pub shards: Vec<ShardStats>,
    /// The neighbour resolver (ARP and IPv6 neighbour discovery).
    #[serde(default)]
    pub neighbors: NeighborStats,
}

/// What the neighbour resolver has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborStats {
    /// Real servers whose MAC address is known now.
    pub resolved: u64,
    pub requests: u64,
    pub replies: u64,
    /// Requests that went unanswered.
    pub failures: u64,
}

impl DaemonStats {
    /// Drops of one reason summed over shards.
    pub fn drops(&self, reason: &str) -> u64 {
        self.shards
            .iter()
            .map(|s| s.drops.get(reason).copied().unwrap_or(0))
            .sum()
    }
}

/// Errors of the framing helpers.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// I/O error on the admin socket
    #[error("admin socket I/O: {0}")]
    Io(#[from] io::Error),
    /// the peer closed the connection
    #[error("the peer closed the connection")]
    Closed,
    /// a message longer than the limit
    #[error("message longer than {0} bytes")]
    TooLong(usize),
    /// a message that is not valid JSON of the expected shape
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes one message as a JSON line and flushes.
pub fn write_message<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()?;
    Ok(())
}

/// Reads one raw line (without its newline), refusing lines over
/// [`MAX_MESSAGE`] (a request, as the daemon reads it).
pub fn read_line(r: &mut impl BufRead) -> Result<Vec<u8>, FrameError> {
    read_line_up_to(r, MAX_MESSAGE)
}

/// Reads one raw line (without its newline) of at most `limit` bytes.
pub fn read_line_up_to(r: &mut impl BufRead, limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut line = Vec::new();
    let mut limited = io::Read::take(&mut *r, limit as u64);
    let n = limited.read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(FrameError::Closed);
    }
    if line.last() != Some(&b'\n') {
        if line.len() >= limit {
            return Err(FrameError::TooLong(limit));
        }
        return Err(FrameError::Closed);
    }
    line.pop();
    Ok(line)
}

/// Reads and decodes one message of up to [`MAX_REPLY`] bytes.
pub fn read_message<T: DeserializeOwned>(r: &mut impl BufRead) -> Result<T, FrameError> {
    let line = read_line_up_to(r, MAX_REPLY)?;
    Ok(serde_json::from_slice(&line)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error kind from a newer daemon still comes through, with its
    /// message.
    #[test]
    fn unknown_error_kinds_are_kept() {
        let r: Response =
            serde_json::from_str(r#"{"result":"error","kind":"weird","message":"m"}"#).unwrap();
        assert_eq!(
            r,
            Response::Error {
                kind: ErrorKind::Unknown,
                message: "m".into()
            }
        );
    }

    #[test]
    fn request_round_trip() {
        let req = Request::new(Op::AddDest {
            service: ServiceKey {
                protocol: Protocol::Tcp,
                addr: "198.19.0.100:80".parse().unwrap(),
            },
            dest: DestSpec {
                addr: "198.18.1.11:8080".parse().unwrap(),
                weight: 3,
                method: Method::Nat,
                u_threshold: 0,
                l_threshold: 0,
            },
        });
        let mut buf = Vec::new();
        write_message(&mut buf, &req).unwrap();
        assert_eq!(buf.last(), Some(&b'\n'));
        let back: Request = read_message(&mut &buf[..]).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn wire_form_is_stable() {
        let req = Request::new(Op::Zero { service: None });
        let s = serde_json::to_string(&req).unwrap();
        assert_eq!(s, r#"{"v":1,"op":{"op":"zero","service":null}}"#);
        let back: Request = serde_json::from_str(r#"{"v":1,"op":{"op":"list"}}"#).unwrap();
        assert_eq!(back.op, Op::List { service: None });
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"{"[..],
            b"null",
            b"{\"v\":1}",
            b"\xff\xfe",
            b"{\"v\":1,\"op\":{\"op\":\"nope\"}}",
        ] {
            let mut line = bad.to_vec();
            line.push(b'\n');
            assert!(read_message::<Request>(&mut &line[..]).is_err());
        }
        assert!(matches!(
            read_message::<Request>(&mut &b""[..]),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn change_ops_are_marked() {
        assert!(Op::Clear.is_change());
        assert!(Op::Zero { service: None }.is_change());
        assert!(!Op::List { service: None }.is_change());
        assert!(!Op::DaemonStats.is_change());
    }
}
