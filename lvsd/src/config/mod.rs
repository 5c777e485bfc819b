//! The boot-time configuration file (TOML).
//!
//! A file becomes [`DaemonConfig`] (how lvsd runs) and a list of admin
//! operations (what it serves): the same [`Op`]s the admin socket takes, so
//! a boot, a reload and `lvsadm` share one code path. Loading also validates
//! those operations against an empty rule model, so every mistake is reported
//! with the file, line and column it came from, before anything is touched.
//!
//! ```toml
//! [daemon]
//! interfaces = ["ext0", "int0"]
//!
//! [[service]]
//! protocol = "tcp"
//! address = "198.19.0.100:80"
//! scheduler = "wrr"
//!
//!   [[service.real_server]]
//!   address = "198.18.1.11:8080"
//!   weight = 1
//!   method = "nat"
//! ```

use crate::rules::{Model, DEFAULT_TIMEOUTS};
use lvsd_proto::{
    DestSpec, Method, Op, Protocol, ServiceKey, ServiceSpec, Timeouts, DEFAULT_SOCKET,
};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based; 0 when the error has no place (the file cannot be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// How the daemon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Interfaces lvsd forwards on.
    pub interfaces: Vec<String>,
    /// Shard threads; defaults to the number of CPUs.
    pub shards: usize,
    /// Whether the file set `shards` (then `auto` keeps packet sockets when
    /// the interfaces' receive queues allow fewer XDP shards).
    pub shards_set: bool,
    /// How frames reach lvsd.
    pub backend: Backend,
    /// XDP backend: microseconds a shard keeps polling its AF_XDP sockets
    /// after the last frame before it sleeps (0: sleep at once).
    pub busy_poll_us: u64,
    pub admin_socket: PathBuf,
    pub admin_group: Option<String>,
    pub socket_mode: u32,
    /// Connection-table entries per shard.
    pub conn_limit: usize,
    /// Receive buffers per shard (a power of two).
    pub buffers: u16,
    /// Bytes per receive buffer.
    pub buffer_size: usize,
    /// Install the nftables table that keeps the kernel off lvsd's traffic.
    pub kernel_filter: bool,
    /// tracing filter ("info", "lvsd=debug", ...).
    pub log: String,
    /// CPUs the shards are pinned to, shard i on `cpus[i % len]`; empty:
    /// not pinned.
    pub cpus: Vec<usize>,
    /// The shard threads' nice value (-20 to 19).
    pub shard_nice: i32,
    /// The shard threads' scheduling policy.
    pub shard_policy: ShardPolicy,
}

/// Default nice value of the shard threads: forwarding goes ahead of the
/// host's processes, as the kernel's own forwarding (in softirq context)
/// does.
pub const DEFAULT_SHARD_NICE: i32 = -20;

/// How the kernel schedules the shard threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardPolicy {
    /// SCHED_BATCH: a woken shard does not preempt the running task; frames
    /// that arrive meanwhile are forwarded in one batch.
    Batch,
    /// SCHED_OTHER: a woken shard may preempt the running task.
    Normal,
}

/// Default busy-poll time of the XDP backend, in microseconds.
pub const DEFAULT_BUSY_POLL_US: u64 = 0;

/// How frames reach lvsd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// XDP when it can be set up and no more than one shard was asked
    /// for; packet sockets otherwise.
    Auto,
    /// An XDP program and AF_XDP sockets; failing to set them up is fatal.
    Xdp,
    /// Packet sockets only.
    Packet,
}

/// A whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonConfig,
    /// Services, destinations and timeouts, in file order.
    pub ops: Vec<Op>,
}

impl Config {
    /// The operations that make a running lvsd match this file: everything
    /// cleared, then the file's rules, as one batch.
    pub fn reload_batch(&self) -> Op {
        let mut ops = vec![
            Op::Clear,
            Op::SetTimeouts {
                timeouts: DEFAULT_TIMEOUTS,
            },
        ];
        ops.extend(self.ops.iter().cloned());
        Op::Batch { ops }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    daemon: DaemonSection,
    timeouts: Option<Spanned<TimeoutsSection>>,
    #[serde(default)]
    service: Vec<Spanned<ServiceSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonSection {
    interfaces: Spanned<Vec<String>>,
    shards: Option<Spanned<usize>>,
    backend: Option<Backend>,
    busy_poll_us: Option<Spanned<u64>>,
    admin_socket: Option<Spanned<PathBuf>>,
    admin_group: Option<String>,
    socket_mode: Option<Spanned<String>>,
    conn_limit: Option<Spanned<usize>>,
    buffers: Option<Spanned<u32>>,
    buffer_size: Option<Spanned<usize>>,
    kernel_filter: Option<bool>,
    log: Option<String>,
    cpus: Option<Spanned<Vec<usize>>>,
    shard_nice: Option<Spanned<i32>>,
    shard_policy: Option<ShardPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsSection {
    tcp: Option<u32>,
    tcp_fin: Option<u32>,
    udp: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    protocol: Spanned<String>,
    address: Spanned<String>,
    scheduler: Option<Spanned<String>>,
    persistent: Option<Spanned<u32>>,
    #[serde(default)]
    real_server: Vec<Spanned<RealServerSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RealServerSection {
    address: Spanned<String>,
    weight: Option<Spanned<u32>>,
    method: Option<Spanned<String>>,
    u_threshold: Option<u32>,
    l_threshold: Option<u32>,
}

/// Turns byte spans into line and column.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let at = span.start.min(self.text.len());
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Parses and checks configuration text; `path` is for messages only.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let at = Locator { path, text };
    let file: File = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        at.err(span, e.message().trim().to_string())
    })?;

    let d = file.daemon;
    if d.interfaces.get_ref().is_empty() {
        return Err(at.err(d.interfaces.span(), "daemon.interfaces names no interface"));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards_set = d.shards.is_some();
    let busy_poll_us = match d.busy_poll_us {
        Some(b) if *b.get_ref() > 10_000 => {
            return Err(at.err(b.span(), "busy_poll_us must be from 0 to 10000"))
        }
        Some(b) => b.into_inner(),
        None => DEFAULT_BUSY_POLL_US,
    };
    let shards = match d.shards {
        Some(s) if *s.get_ref() == 0 || *s.get_ref() > 64 => {
            return Err(at.err(s.span(), "shards must be between 1 and 64"))
        }
        Some(s) => s.into_inner(),
        None => cpus,
    };
    let socket_mode = match d.socket_mode {
        Some(m) => u32::from_str_radix(m.get_ref().trim_start_matches("0o"), 8)
            .ok()
            .filter(|v| *v <= 0o777)
            .ok_or_else(|| {
                at.err(
                    m.span(),
                    format!(
                        "socket_mode '{}' is not an octal mode such as \"0660\"",
                        m.get_ref()
                    ),
                )
            })?,
        None => 0o660,
    };
    let conn_limit = match d.conn_limit {
        Some(c) if !(1..=crate::conn::MAX_CAPACITY).contains(c.get_ref()) => {
            return Err(at.err(
                c.span(),
                format!("conn_limit must be from 1 to {}", crate::conn::MAX_CAPACITY),
            ))
        }
        Some(c) => c.into_inner(),
        None => 1 << 20,
    };
    let buffers = match d.buffers {
        Some(b) => {
            let v = *b.get_ref();
            if !(8..=32768).contains(&v) || !v.is_power_of_two() {
                return Err(at.err(b.span(), "buffers must be a power of two from 8 to 32768"));
            }
            u16::try_from(v).unwrap_or(u16::MAX)
        }
        None => 512,
    };
    let buffer_size = match d.buffer_size {
        Some(b) if !(2048..=262_144).contains(b.get_ref()) => {
            return Err(at.err(b.span(), "buffer_size must be from 2048 to 262144 bytes"))
        }
        Some(b) => b.into_inner(),
        None => 65_536 + 512,
    };
    let pinned = match d.cpus {
        // CPU_SETSIZE is 1024.
        Some(c) if c.get_ref().iter().any(|&n| n >= 1024) || c.get_ref().is_empty() => {
            return Err(at.err(c.span(), "cpus must list CPU numbers, for example [1, 2]"))
        }
        Some(c) => c.into_inner(),
        None => Vec::new(),
    };
    let shard_nice = match d.shard_nice {
        Some(n) if !(-20..=19).contains(n.get_ref()) => {
            return Err(at.err(n.span(), "shard_nice must be from -20 to 19"))
        }
        Some(n) => n.into_inner(),
        None => DEFAULT_SHARD_NICE,
    };
    let daemon = DaemonConfig {
        interfaces: d.interfaces.into_inner(),
        shards,
        shards_set,
        backend: d.backend.unwrap_or(Backend::Auto),
        busy_poll_us,
        admin_socket: match d.admin_socket {
            Some(p) if p.get_ref().as_os_str().is_empty() => {
                return Err(at.err(p.span(), "admin_socket must name a path"))
            }
            Some(p) => p.into_inner(),
            None => PathBuf::from(DEFAULT_SOCKET),
        },
        admin_group: d.admin_group,
        socket_mode,
        conn_limit,
        buffers,
        buffer_size,
        kernel_filter: d.kernel_filter.unwrap_or(true),
        log: d.log.unwrap_or_else(|| "info".into()),
        cpus: pinned,
        shard_nice,
        shard_policy: d.shard_policy.unwrap_or(ShardPolicy::Batch),
    };

    // Rules become operations, each with the places it came from.
    let mut ops: Vec<(Op, Places)> = Vec::new();
    if let Some(t) = file.timeouts {
        let span = t.span();
        let t = t.into_inner();
        // 0 means "leave as it is" to --set; in a file it is a mistake.
        if [t.tcp, t.tcp_fin, t.udp].contains(&Some(0)) {
            return Err(at.err(
                span,
                "a timeout of 0 is not allowed (leave the key out for the default)",
            ));
        }
        ops.push((
            Op::SetTimeouts {
                timeouts: Timeouts {
                    tcp: t.tcp.unwrap_or(DEFAULT_TIMEOUTS.tcp),
                    tcp_fin: t.tcp_fin.unwrap_or(DEFAULT_TIMEOUTS.tcp_fin),
                    udp: t.udp.unwrap_or(DEFAULT_TIMEOUTS.udp),
                },
            },
            Places::table(span),
        ));
    }
    for s in file.service {
        let sspan = s.span();
        let s = s.into_inner();
        let protocol = match s.protocol.get_ref().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(at.err(
                    s.protocol.span(),
                    format!("protocol '{other}' is not \"tcp\" or \"udp\""),
                ))
            }
        };
        let addr: SocketAddr = s.address.get_ref().parse().map_err(|_| {
            at.err(
                s.address.span(),
                format!(
                    "address '{}' is not IP:port (IPv6 as [addr]:port)",
                    s.address.get_ref()
                ),
            )
        })?;
        let key = ServiceKey { protocol, addr };
        let (scheduler, sched_span) = match s.scheduler {
            Some(x) => {
                let span = x.span();
                (x.into_inner(), Some(span))
            }
            None => ("wlc".to_string(), None),
        };
        ops.push((
            Op::AddService {
                service: ServiceSpec {
                    key,
                    scheduler,
                    persistent: s.persistent.as_ref().map(|p| *p.get_ref()),
                },
            },
            Places {
                address: Some(s.address.span()),
                scheduler: sched_span,
                persistent: s.persistent.map(|p| p.span()),
                ..Places::table(sspan.clone())
            },
        ));
        for r in s.real_server {
            let rspan = r.span();
            let r = r.into_inner();
            let raddr: SocketAddr = match r.address.get_ref().parse() {
                Ok(a) => a,
                // A bare address takes the service's port, as in ipvsadm.
                Err(_) => match r.address.get_ref().parse::<std::net::IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, addr.port()),
                    Err(_) => {
                        return Err(at.err(
                            r.address.span(),
                            format!(
                                "real server address '{}' is not IP or IP:port",
                                r.address.get_ref()
                            ),
                        ))
                    }
                },
            };
            let method = match r.method.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("nat") | Some("masq") => Method::Nat,
                Some("dr") | Some("route") => Method::Dr,
                Some("tun") | Some("tunnel") | Some("ipip") => Method::Tun,
                Some(other) => {
                    let span = r.method.as_ref().map_or(rspan.clone(), |m| m.span());
                    return Err(at.err(
                        span,
                        format!("method '{other}' is not \"nat\", \"dr\" or \"tun\""),
                    ));
                }
            };
            let weight = r.weight.as_ref().map_or(1, |w| *w.get_ref());
            let places = Places {
                address: Some(r.address.span()),
                method: r.method.as_ref().map(|m| m.span()),
                weight: r.weight.as_ref().map(|w| w.span()),
                ..Places::table(rspan)
            };
            ops.push((
                Op::AddDest {
                    service: key,
                    dest: DestSpec {
                        addr: raddr,
                        weight,
                        method,
                        u_threshold: r.u_threshold.unwrap_or(0),
                        l_threshold: r.l_threshold.unwrap_or(0),
                    },
                },
                places,
            ));
        }
    }

    // Validate on a scratch model, so the error carries its place.
    let mut scratch = Model::new(1);
    for (op, places) in &ops {
        if let Err(e) = scratch.apply(op) {
            return Err(at.err(places.of(&e), e.message));
        }
    }
    Ok(Config {
        daemon,
        ops: ops.into_iter().map(|(op, _)| op).collect(),
    })
}

impl DaemonConfig {
    /// The keys whose values differ from `running`'s (a reload applies only
    /// the rules; these need a restart).
    pub fn changed_from(&self, running: &DaemonConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |key, differs: bool| {
            if differs {
                out.push(key);
            }
        };
        check("interfaces", self.interfaces != running.interfaces);
        check(
            "shards",
            (self.shards, self.shards_set) != (running.shards, running.shards_set),
        );
        check("backend", self.backend != running.backend);
        check("busy_poll_us", self.busy_poll_us != running.busy_poll_us);
        check("admin_socket", self.admin_socket != running.admin_socket);
        check("admin_group", self.admin_group != running.admin_group);
        check("socket_mode", self.socket_mode != running.socket_mode);
        check("conn_limit", self.conn_limit != running.conn_limit);
        check("buffers", self.buffers != running.buffers);
        check("buffer_size", self.buffer_size != running.buffer_size);
        check("kernel_filter", self.kernel_filter != running.kernel_filter);
        check("log", self.log != running.log);
        check("cpus", self.cpus != running.cpus);
        check("shard_nice", self.shard_nice != running.shard_nice);
        check("shard_policy", self.shard_policy != running.shard_policy);
        out
    }
}

/// Where an operation's parts are in the file, to point an error at the
/// key it is about.
#[derive(Default)]
struct Places {
    /// The whole table (`[[service]]`, `[[service.real_server]]`,
    /// `[timeouts]`).
    table: Range<usize>,
    address: Option<Range<usize>>,
    scheduler: Option<Range<usize>>,
    persistent: Option<Range<usize>>,
    method: Option<Range<usize>>,
    weight: Option<Range<usize>>,
}

impl Places {
    fn table(table: Range<usize>) -> Self {
        Places {
            table,
            ..Places::default()
        }
    }

    /// The place of what `e` is about (the table's, when that key is not
    /// in the file).
    fn of(&self, e: &crate::rules::RuleError) -> Range<usize> {
        use lvsd_proto::ErrorKind;
        let m = e.message.as_str();
        let key = match e.kind {
            ErrorKind::NoScheduler => &self.scheduler,
            ErrorKind::Unsupported => &self.persistent,
            ErrorKind::Invalid if m.starts_with("weight") => &self.weight,
            ErrorKind::Invalid if m.contains("threshold") => &None,
            ErrorKind::Invalid if m.contains("direct routing") || m.contains("\"local\"") => {
                &self.method
            }
            _ => &self.address,
        };
        key.clone().unwrap_or_else(|| self.table.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[daemon]
interfaces = ["ext0", "int0"]
shards = 2
admin_socket = "/tmp/x.sock"

[timeouts]
tcp_fin = 30

[[service]]
protocol = "tcp"
address = "198.19.0.100:80"
scheduler = "wrr"

  [[service.real_server]]
  address = "198.18.1.11:8080"
  weight = 1
  method = "nat"

  [[service.real_server]]
  address = "198.18.1.12"
  weight = 3
  method = "nat"
"#;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("test.toml"), text)
    }

    #[test]
    fn good_file() {
        let c = p(GOOD).unwrap();
        assert_eq!(c.daemon.interfaces, vec!["ext0", "int0"]);
        assert_eq!(c.daemon.shards, 2);
        assert_eq!(c.daemon.socket_mode, 0o660);
        assert_eq!(c.ops.len(), 4);
        match &c.ops[3] {
            Op::AddDest { dest, .. } => {
                assert_eq!(dest.addr, "198.18.1.12:80".parse().unwrap());
                assert_eq!(dest.weight, 3);
            }
            other => panic!("{other:?}"),
        }
        let mut m = Model::new(1);
        m.apply(&c.reload_batch()).unwrap();
        assert_eq!(m.timeouts.tcp_fin, 30);
        assert_eq!(m.services[0].dests.len(), 2);
    }

    fn err_at(text: &str) -> (usize, String) {
        let e = p(text).unwrap_err();
        (e.line, e.message)
    }

    /// Every [daemon] key a reload would ignore is named (the struct has
    /// no field `changed_from` leaves out: a new one must be added there).
    #[test]
    fn changed_daemon_settings_are_named() {
        let a = p(GOOD).unwrap().daemon;
        assert!(a.changed_from(&a).is_empty());
        let b = p(&GOOD.replace(
            "shards = 2",
            "shards = 2\nsocket_mode = \"0600\"\nconn_limit = 8",
        ))
        .unwrap()
        .daemon;
        assert_eq!(b.changed_from(&a), ["socket_mode", "conn_limit"]);
        let DaemonConfig {
            interfaces: _,
            shards: _,
            shards_set: _,
            backend: _,
            busy_poll_us: _,
            admin_socket: _,
            admin_group: _,
            socket_mode: _,
            conn_limit: _,
            buffers: _,
            buffer_size: _,
            kernel_filter: _,
            log: _,
            cpus: _,
            shard_nice: _,
            shard_policy: _,
        } = a;
    }

    #[test]
    fn errors_name_line_and_problem() {
        let bad_sched = GOOD.replace("\"wrr\"", "\"fastest\"");
        let (line, msg) = err_at(&bad_sched);
        assert_eq!(line, 13, "{msg}");
        assert!(msg.contains("unknown scheduler 'fastest'"), "{msg}");

        let bad_addr = GOOD.replace("198.18.1.11:8080", "198.18.1.311:8080");
        let (line, msg) = err_at(&bad_addr);
        assert_eq!(line, 16, "{msg}");
        assert!(msg.contains("198.18.1.311"), "{msg}");

        let long = GOOD.replace("tcp_fin = 30", "tcp_fin = 2678401");
        let (line, msg) = err_at(&long);
        assert_eq!(line, 7, "the [timeouts] table: {msg}");
        assert!(msg.contains("over 31 days"), "{msg}");

        let bad_key = GOOD.replace("weight = 3", "wieght = 3");
        let (line, msg) = err_at(&bad_key);
        assert_eq!(line, 22, "{msg}");
        assert!(msg.contains("wieght"), "{msg}");

        // Each error points at the key it is about.
        let dup = GOOD.replace("198.18.1.12\"", "198.18.1.11:8080\"");
        let (line, msg) = err_at(&dup);
        assert_eq!(line, 21, "the duplicate's address: {msg}");
        assert!(msg.contains("already exists"), "{msg}");
        let port0 = GOOD.replace("198.19.0.100:80", "198.19.0.100:0");
        let (line, msg) = err_at(&port0);
        assert_eq!(line, 12, "the service's address: {msg}");
        let heavy = GOOD.replace(
            "weight = 3\n  method = \"nat\"",
            "weight = 70000\n  method = \"dr\"",
        );
        let (line, msg) = err_at(&heavy);
        assert_eq!(line, 22, "the weight: {msg}");
        assert!(msg.contains("70000"), "{msg}");
        let moved = GOOD.replace(
            "198.18.1.11:8080\"\n  weight = 1\n  method = \"nat\"",
            "198.18.1.11:8080\"\n  weight = 1\n  method = \"dr\"",
        );
        let (line, msg) = err_at(&moved);
        assert_eq!(line, 18, "the method: {msg}");
        assert!(msg.contains("cannot change the port"), "{msg}");
        let zero = GOOD.replace("tcp_fin = 30", "tcp_fin = 0");
        let (line, msg) = err_at(&zero);
        assert_eq!(line, 7, "{msg}");
        assert!(msg.contains("timeout of 0"), "{msg}");

        let (line, msg) = err_at("[daemon]\ninterfaces = [\"a\"]\nadmin_socket = \"\"\n");
        assert_eq!((line, msg.as_str()), (3, "admin_socket must name a path"));

        let (line, msg) = err_at("[daemon]\ninterfaces = []\n");
        assert_eq!(line, 2, "{msg}");

        let (line, msg) = err_at("[daemon]\ninterfaces = [\"a\"]\nshards = 0\n");
        assert_eq!(line, 3, "{msg}");

        let (line, msg) = err_at("[daemon]\ninterfaces = [\"a\"]\nconn_limit = 0\n");
        assert_eq!(
            (line, msg.as_str()),
            (3, "conn_limit must be from 1 to 2147483648")
        );
        let (line, msg) = err_at("[daemon]\ninterfaces = [\"a\"]\nconn_limit = 4294967295\n");
        assert_eq!(
            (line, msg.as_str()),
            (3, "conn_limit must be from 1 to 2147483648")
        );

        let (line, msg) = err_at("[daemon]\ninterfaces = [\"a\"]\ncpus = []\n");
        assert_eq!(line, 3, "{msg}");

        let (line, msg) = err_at("[daemon]\ninterfaces = [\"a\"]\nbackend = \"dpdk\"\n");
        assert_eq!(line, 3, "{msg}");
        assert!(msg.contains("auto, xdp") || msg.contains("`auto`"), "{msg}");
        let (line, msg) = err_at("[daemon]\ninterfaces = [\"a\"]\nbusy_poll_us = 20000\n");
        assert_eq!(
            (line, msg.as_str()),
            (3, "busy_poll_us must be from 0 to 10000")
        );
        let c = p("[daemon]\ninterfaces = [\"a\"]\nbackend = \"packet\"\nshards = 1\n").unwrap();
        assert_eq!(c.daemon.backend, Backend::Packet);
        assert!(c.daemon.shards_set);
        let c = p("[daemon]\ninterfaces = [\"a\"]\n").unwrap();
        assert_eq!(
            (c.daemon.backend, c.daemon.shards_set),
            (Backend::Auto, false)
        );
        let c = p("[daemon]\ninterfaces = [\"a\"]\ncpus = [1, 0]\n").unwrap();
        assert_eq!(c.daemon.cpus, vec![1, 0]);
        assert_eq!(
            (c.daemon.shard_nice, c.daemon.shard_policy),
            (DEFAULT_SHARD_NICE, ShardPolicy::Batch)
        );
        let c = p("[daemon]\ninterfaces = [\"a\"]\nshard_nice = 0\nshard_policy = \"normal\"\n")
            .unwrap();
        assert_eq!(
            (c.daemon.shard_nice, c.daemon.shard_policy),
            (0, ShardPolicy::Normal)
        );
        let (line, msg) = err_at("[daemon]\ninterfaces = [\"a\"]\nshard_nice = -21\n");
        assert_eq!(
            (line, msg.as_str()),
            (3, "shard_nice must be from -20 to 19")
        );
        let (line, msg) = err_at("[daemon]\ninterfaces = [\"a\"]\n\nshard_policy = \"fifo\"\n");
        assert_eq!(line, 4, "{msg}");

        let e = p("[daemon\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.to_string().starts_with("test.toml:1:"), "{e}");
    }

    #[test]
    fn unreadable_file() {
        let e = load(Path::new("/nonexistent/lvsd.toml")).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e.to_string().contains("cannot read"));
    }
}
