//! The namespace lab for the end-to-end tests (see /work/shared/TESTBED.md).
//!
//! ```text
//!  [client] eth0 198.18.0.2 ==veth== ext0 198.18.0.1 [director]
//!                                    int0 198.18.1.1 [director] ==veth== dir0 [lan]
//!  [rsN] eth0 198.18.1.(10+N) ==veth== rsN [lan]
//!  [lan] bridge br0 over dir0, rs1, rs2, ...        VIP 198.19.0.100
//! ```
//!
//! Every object lives in namespaces the lab creates, named after a prefix
//! unique to the run (`lvt<pid>-<counter>-<test>`); interfaces are created
//! inside them with `ip -n`, so nothing touches the host's namespace. The
//! client routes 198.19.0.0/16 (the VIPs) via the director, the real servers
//! route everything via the director (NAT mode). The director's kernel does
//! not forward: only lvsd moves packets between its two sides.
//!
//! Each namespace has IPv6 off (no ND/MLD noise in frame counts) and
//! `ip_forward=0`; every veth end has its offloads off (except in
//! [`Lab::nat_with_offloads`]); the bridge has a
//! static FDB entry for every MAC behind it. The interface holding an IPv4
//! address `a.b.c.d` has the MAC `02:00:a:b:c:d` (hex, see [`mac_of`]); its
//! bridge-side peer has `02:01:a:b:c:d`.
//!
//! [`Lab::build`] wires the TESTBED's full topology for every forwarding
//! method, optionally dual-stack:
//!
//! ```text
//!  [client] eth0 198.18.0.2 ==veth== ext0 198.18.0.1 [director]
//!  [client] lan0 198.18.1.2 ==veth== cl0 [lan]        int0 198.18.1.1 ==veth== dir0 [lan]
//!  [rsN] eth0 198.18.1.(10+N) ==veth== rsN [lan]
//!  [lan] bridge br0 over dir0, cl0, rs1, rs2, ...     VIP 198.19.0.100
//!  IPv6 (LabOptions::ipv6): fd00:198:18::2 (client eth0), fd00:198:18::1
//!  (ext0), fd00:198:18:1::1 (int0), fd00:198:18:1::(10+N) (rsN),
//!  fd00:198:18:1::2 (client lan0), VIP6 fd00:198:19::100
//! ```
//!
//! Each real server is set up for its own method ([`LabOptions::methods`]):
//! - NAT: default route (and IPv6 default route) via the director's int0.
//! - DR and TUN: the VIP (and VIP6) on `lo`, `arp_ignore=1` and
//!   `arp_announce=2` on `all` and `eth0`, and routes to the client's
//!   networks via the client's `lan0`, so replies go straight to the client
//!   over the LAN and never through the director.
//! - TUN: in addition `rp_filter=0`, and an `lvs-tundecap` process (started
//!   by the lab, stopped on drop) that decapsulates IPv4-in-IPv4 and
//!   IPv6-in-IPv6 into a TUN device `lvstun0`, since the kernel has no ipip.
//!
//! The client has `rp_filter=0` (replies from the VIP come in on `lan0`
//! although the VIP is routed via `eth0`). In an IPv6 lab the client, the
//! director and the real servers have IPv6 on, with DAD, router
//! solicitations and RA off and every address `nodad`; the `lan` namespace
//! keeps IPv6 off and its bridge has multicast snooping off (so neighbour
//! solicitations are flooded as on a plain switch). [`Lab::nat`] keeps the
//! original NAT-only wiring above (no client `lan0`, IPv6 off everywhere).
//!
//! Dropping the [`Lab`] (also while unwinding from a panic) stops the
//! processes it started, deletes exactly the namespaces it created and
//! removes its temporary directory. While panicking it first prints the tail
//! of every process log, so a failing test shows what lvsd said.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{geteuid, Pid};

/// How a lab's real server is set up to be reached (see the module doc).
/// The lab's own type, not lvsd_proto's `Method`, so the lab does not
/// change with the daemon's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fwd {
    /// NAT (masquerading): replies go back through the director.
    Nat,
    /// Direct routing: VIP on lo, replies straight to the client.
    Dr,
    /// IP-in-IP tunneling: as DR, plus user-space decapsulation.
    Tun,
}

impl Fwd {
    /// The config file's word for it: `nat`, `dr`, `tun`.
    pub fn config_name(self) -> &'static str {
        match self {
            Fwd::Nat => "nat",
            Fwd::Dr => "dr",
            Fwd::Tun => "tun",
        }
    }

    /// ipvsadm's Forward column: `Masq`, `Route`, `Tunnel`.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            Fwd::Nat => "Masq",
            Fwd::Dr => "Route",
            Fwd::Tun => "Tunnel",
        }
    }

    /// The lvsadm / ipvsadm option: `-m`, `-g`, `-i`.
    pub fn flag(self) -> &'static str {
        match self {
            Fwd::Nat => "-m",
            Fwd::Dr => "-g",
            Fwd::Tun => "-i",
        }
    }
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// The virtual IP the client reaches through the director.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 100);
/// The client's address (client `eth0`).
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The director's client-side address (director `ext0`).
pub const DIRECTOR_EXT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The director's LAN-side address (director `int0`), the real servers' gateway.
pub const DIRECTOR_INT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The client's address on the LAN (client `lan0`, [`Lab::build`] only): the
/// gateway DR and TUN real servers answer through.
pub const CLIENT_LAN: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The IPv6 virtual IP.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x19, 0, 0, 0, 0, 0x100);
/// The client's IPv6 address (client `eth0`).
pub const CLIENT_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 2);
/// The director's client-side IPv6 address (director `ext0`).
pub const DIRECTOR_EXT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 1);
/// The director's LAN-side IPv6 address (director `int0`).
pub const DIRECTOR_INT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 1, 0, 0, 0, 1);
/// The client's IPv6 address on the LAN (client `lan0`).
pub const CLIENT_LAN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 1, 0, 0, 0, 2);
/// The name of the TUN device `lvs-tundecap` creates in a TUN real server.
pub const TUN_DEV: &str = "lvstun0";

/// How long [`Lab::exec`] lets a command run before killing it.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a setup command (`ip`, `ethtool`, ...) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request on lvsd's admin socket may take to write or answer.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Set to a non-empty value other than `0` to make a missing root or
/// namespace support a test failure instead of a skip (for CI).
pub const REQUIRE_ENV: &str = "LVS_REQUIRE_NETNS";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A process started by [`Lab::spawn`]; the lab owns it and stops it on drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcId(pub u32);

struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

/// What [`Lab::build`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// The forwarding method each real server is set up for: rs1 gets
    /// `methods[0]`, and so on; its length is the number of real servers
    /// (1..=200). Mixing methods is allowed.
    pub methods: Vec<Fwd>,
    /// Dual-stack: IPv6 addresses and routes besides the IPv4 ones.
    pub ipv6: bool,
}

impl LabOptions {
    /// `n` real servers, all set up for `method`, IPv4 only.
    pub fn uniform(n: usize, method: Fwd) -> LabOptions {
        LabOptions {
            methods: vec![method; n],
            ipv6: false,
        }
    }

    /// One real server per entry, each set up for its method, IPv4 only.
    pub fn mixed(methods: &[Fwd]) -> LabOptions {
        LabOptions {
            methods: methods.to_vec(),
            ipv6: false,
        }
    }

    /// The same, dual-stack.
    pub fn with_ipv6(mut self) -> LabOptions {
        self.ipv6 = true;
        self
    }
}

/// A set of network namespaces wired as the TESTBED's topology.
pub struct Lab {
    /// A per-lab temporary directory (configs, logs, the admin socket);
    /// removed on drop.
    pub dir: PathBuf,
    prefix: String,
    /// (role, namespace name), in creation order; only namespaces that
    /// `ip netns add` did create are listed here.
    roles: Vec<(String, String)>,
    real_servers: usize,
    procs: Mutex<Vec<Proc>>,
    /// How many processes were spawned, to name their logs.
    spawned: AtomicUsize,
    /// Every spawned process's log, also after it was stopped.
    logs: Mutex<BTreeMap<u32, PathBuf>>,
    lvsd: Mutex<Option<ProcId>>,
    socket: Mutex<PathBuf>,
    /// Each real server's method (all NAT for [`Lab::nat`]).
    methods: Vec<Fwd>,
    ipv6: bool,
    /// Whether the client has `lan0` on the bridge ([`Lab::build`]).
    client_lan: bool,
    /// The `lvs-tundecap` of each TUN real server, by index.
    tundecaps: BTreeMap<usize, ProcId>,
    /// Offloads left on ([`Lab::nat_with_offloads`]).
    offloads: bool,
}

impl Lab {
    /// Whether this process may build labs. When it may not, prints
    /// `skipped: needs root and network namespaces (<why>)` and returns
    /// false; with [`REQUIRE_ENV`] set it panics instead.
    pub fn skip_unless_root() -> bool {
        let why = if !geteuid().is_root() {
            Some("not running as root".to_owned())
        } else if let Err(e) = run_bounded(cmd("ip", &["netns", "list"]), SETUP_TIMEOUT)
            .map_err(|e| e.to_string())
            .and_then(|o| check("ip netns list", o).map_err(|e| e.to_string()))
        {
            Some(format!("`ip netns` unavailable: {e}"))
        } else {
            // A thread may unshare its network namespace alone; the new
            // namespace goes away with the thread.
            match thread::spawn(|| unshare(CloneFlags::CLONE_NEWNET)).join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("cannot create a network namespace: {e}")),
                Err(_) => Some("namespace probe panicked".to_owned()),
            }
        };
        match why {
            None => true,
            Some(why) => {
                let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
                assert!(!required, "{REQUIRE_ENV} is set but: {why}");
                println!("skipped: needs root and network namespaces ({why})");
                false
            }
        }
    }

    /// A test that cannot run here for a reason other than root or
    /// namespaces (a kernel feature, a host group): prints `skipped: <test>:
    /// <why>` and returns, so the caller returns early; with [`REQUIRE_ENV`]
    /// set (CI, tests/run.sh as root) it panics instead, since there the
    /// environment is expected to have it.
    pub fn require_or_skip(why: &str) {
        let test = thread::current().name().unwrap_or("?").to_owned();
        let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        assert!(
            !required,
            "{REQUIRE_ENV} is set but {test} cannot run: {why}"
        );
        println!("skipped: {test}: {why}");
    }

    /// Builds the NAT topology with `real_servers` real servers (rs1..rsN).
    /// `name` (a short test name) goes into the namespace names.
    pub fn nat(name: &str, real_servers: usize) -> Result<Lab> {
        if !(1..=200).contains(&real_servers) {
            return Err(format!("real_servers must be 1..=200, not {real_servers}").into());
        }
        Lab::make(name, vec![Fwd::Nat; real_servers], false, false, 1)
    }

    /// [`Lab::nat`] with every veth's offloads left on (TSO, GSO, GRO,
    /// checksum offload: the kernel's defaults), so the director's packet
    /// sockets see TCP super-frames with partial checksums.
    pub fn nat_with_offloads(name: &str, real_servers: usize) -> Result<Lab> {
        if !(1..=200).contains(&real_servers) {
            return Err(format!("real_servers must be 1..=200, not {real_servers}").into());
        }
        let mut lab = Lab::new_unbuilt(name, vec![Fwd::Nat; real_servers], false, false)?;
        lab.offloads = true;
        lab.build_topology(1)?;
        Ok(lab)
    }

    /// [`Lab::nat`] with `queues` transmit and receive queues on every veth
    /// (1..=8), so an XDP director can run one shard per queue.
    pub fn nat_multiqueue(name: &str, real_servers: usize, queues: u32) -> Result<Lab> {
        if !(1..=200).contains(&real_servers) || !(1..=8).contains(&queues) {
            return Err(
                format!("{real_servers} real servers, {queues} queues: out of range").into(),
            );
        }
        Lab::make(name, vec![Fwd::Nat; real_servers], false, false, queues)
    }

    /// Builds the full topology (client `lan0` on the LAN, each real server
    /// set up for its method, optionally dual-stack; see the module doc) and
    /// starts `lvs-tundecap` in every TUN real server. `name` (a short test
    /// name) goes into the namespace names.
    pub fn build(name: &str, opts: LabOptions) -> Result<Lab> {
        let n = opts.methods.len();
        if !(1..=200).contains(&n) {
            return Err(format!("real_servers must be 1..=200, not {n}").into());
        }
        Lab::make(name, opts.methods, opts.ipv6, true, 1)
    }

    fn make(
        name: &str,
        methods: Vec<Fwd>,
        ipv6: bool,
        client_lan: bool,
        queues: u32,
    ) -> Result<Lab> {
        let mut lab = Lab::new_unbuilt(name, methods, ipv6, client_lan)?;
        // From here on an error drops `lab`, which undoes what was made.
        lab.build_topology(queues)?;
        Ok(lab)
    }

    /// The lab's name, directory and bookkeeping, before any namespace.
    fn new_unbuilt(name: &str, methods: Vec<Fwd>, ipv6: bool, client_lan: bool) -> Result<Lab> {
        let real_servers = methods.len();
        let short: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect();
        let prefix = format!(
            "lvt{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            short
        );
        let mut dir = std::env::temp_dir().join(&prefix);
        if dir.as_os_str().len() > 80 {
            // Leave room for the socket name within sun_path's 108 bytes.
            dir = Path::new("/tmp").join(&prefix);
        }
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let lab = Lab {
            socket: Mutex::new(dir.join("lvsd.sock")),
            dir,
            prefix,
            roles: Vec::new(),
            real_servers,
            procs: Mutex::new(Vec::new()),
            spawned: AtomicUsize::new(0),
            logs: Mutex::new(BTreeMap::new()),
            lvsd: Mutex::new(None),
            methods,
            ipv6,
            client_lan,
            tundecaps: BTreeMap::new(),
            offloads: false,
        };
        Ok(lab)
    }

    fn build_topology(&mut self, queues: u32) -> Result<()> {
        let n = self.real_servers;
        let v6 = self.ipv6;
        let mut roles = vec!["client".to_owned(), "director".to_owned(), "lan".to_owned()];
        roles.extend((1..=n).map(|i| format!("rs{i}")));
        for role in &roles {
            let name = format!("{}-{role}", self.prefix);
            setup(cmd("ip", &["netns", "add", &name]))?;
            self.roles.push((role.clone(), name));
            let with_v6 = v6 && role != "lan";
            self.in_ns(role, move || {
                if with_v6 {
                    dual_stack_namespace()
                } else {
                    quiet_namespace()
                }
            })
            .map_err(|e| format!("sysctls in {role}: {e}"))?;
            self.ip(role, "link set lo up")?;
        }

        // (ns, interface, address) at each end of each veth pair; an end
        // without an address is a bridge port.
        let rs: Vec<(String, Ipv4Addr)> = (1..=n)
            .map(|i| (format!("rs{i}"), self.rs_addr(i)))
            .collect();
        let mut links = vec![
            (
                ("client", "eth0", CLIENT_ADDR),
                ("director", "ext0", Some(DIRECTOR_EXT)),
            ),
            (("director", "int0", DIRECTOR_INT), ("lan", "dir0", None)),
        ];
        if self.client_lan {
            links.push((("client", "lan0", CLIENT_LAN), ("lan", "cl0", None)));
        }
        for (name, addr) in &rs {
            links.push(((name, "eth0", *addr), ("lan", name, None)));
        }
        for ((a_ns, a_if, a_addr), (b_ns, b_if, b_addr)) in links {
            let (a_mac, b_mac) = (
                mac_of(a_addr),
                b_addr.map_or_else(|| peer_mac_of(a_addr), mac_of),
            );
            let b_netns = self.ns(b_ns);
            // Only the director's links get the queues: veth passes the
            // queue a frame was sent on along with it, and the bridge then
            // picks dir0's queue from that rather than from the flow's hash.
            let n = if a_ns == "director" || b_ns == "director" {
                queues
            } else {
                1
            };
            let q = format!("numtxqueues {n} numrxqueues {n}");
            let add = format!("link add {a_if} {q} address {a_mac} type veth");
            let peer = format!("peer name {b_if} {q} address {b_mac} netns {b_netns}");
            self.ip(a_ns, &format!("{add} {peer}"))?;
            for (ns, ifname, addr) in [(a_ns, a_if, Some(a_addr)), (b_ns, b_if, b_addr)] {
                if !self.offloads {
                    let offloads =
                        format!("ethtool -K {ifname} tso off gso off gro off tx off rx off sg off");
                    setup(self.ns_cmd(ns, &words(&offloads)))?;
                }
                if let Some(addr) = addr {
                    self.ip(ns, &format!("addr add {addr}/24 dev {ifname}"))?;
                    if v6 {
                        let addr6 = v6_of(addr);
                        self.ip(ns, &format!("-6 addr add {addr6}/64 dev {ifname} nodad"))?;
                    }
                    self.ip(ns, &format!("link set {ifname} up"))?;
                }
            }
        }

        // The bridge, with a static FDB entry for the MAC behind each port.
        if v6 {
            self.ip("lan", "link add br0 type bridge mcast_snooping 0")?;
        } else {
            self.ip("lan", "link add br0 type bridge")?;
        }
        let mut ports = vec![("dir0", DIRECTOR_INT)];
        if self.client_lan {
            ports.push(("cl0", CLIENT_LAN));
        }
        ports.extend(rs.iter().map(|(name, addr)| (name.as_str(), *addr)));
        for (port, behind) in ports {
            self.ip("lan", &format!("link set {port} master br0 up"))?;
            let fdb = format!(
                "-n {} fdb add {} dev {port} master static",
                self.ns("lan"),
                mac_of(behind)
            );
            setup(cmd("bridge", &words(&fdb)))?;
        }
        self.ip("lan", "link set br0 up")?;

        self.ip(
            "client",
            &format!("route add 198.19.0.0/16 via {DIRECTOR_EXT}"),
        )?;
        if v6 {
            self.ip(
                "client",
                &format!("-6 route add fd00:198:19::/48 via {DIRECTOR_EXT6}"),
            )?;
        }
        if self.client_lan {
            // Replies from the VIP come in on lan0, the VIP's route is eth0.
            self.in_ns("client", || {
                ["all", "default", "eth0", "lan0"]
                    .iter()
                    .try_for_each(|i| write_sysctl(&format!("ipv4/conf/{i}/rp_filter"), "0"))
            })?;
        }
        for (i, (name, _)) in rs.iter().enumerate() {
            match self.methods[i] {
                Fwd::Nat => {
                    self.ip(name, &format!("route add default via {DIRECTOR_INT}"))?;
                    if v6 {
                        self.ip(name, &format!("-6 route add default via {DIRECTOR_INT6}"))?;
                    }
                }
                method @ (Fwd::Dr | Fwd::Tun) => {
                    self.setup_vip_holder(name, method)?;
                }
            }
        }
        for i in 1..=n {
            if self.methods[i - 1] == Fwd::Tun {
                let ns = format!("rs{i}");
                let mut args = vec![env!("CARGO_BIN_EXE_lvs-tundecap"), "--dev", TUN_DEV];
                if !v6 {
                    args.push("--no-ipv6");
                }
                let id = self.spawn(&ns, &args)?;
                self.wait_for_line(id, "ready", Duration::from_secs(5))?;
                self.tundecaps.insert(i, id);
            }
        }
        Ok(())
    }

    /// A DR or TUN real server: VIP on lo, ARP kept quiet about it, replies
    /// straight to the client over the LAN.
    fn setup_vip_holder(&self, ns: &str, method: Fwd) -> Result<()> {
        let tun = method == Fwd::Tun;
        self.in_ns(ns, || -> io::Result<()> {
            for i in ["all", "eth0"] {
                write_sysctl(&format!("ipv4/conf/{i}/arp_ignore"), "1")?;
                write_sysctl(&format!("ipv4/conf/{i}/arp_announce"), "2")?;
                if tun {
                    write_sysctl(&format!("ipv4/conf/{i}/rp_filter"), "0")?;
                }
            }
            Ok(())
        })
        .map_err(|e| format!("sysctls in {ns}: {e}"))?;
        self.ip(ns, &format!("addr add {VIP}/32 dev lo"))?;
        self.ip(ns, &format!("route add 198.18.0.0/24 via {CLIENT_LAN}"))?;
        if self.ipv6 {
            self.ip(ns, &format!("-6 addr add {VIP6}/128 dev lo nodad"))?;
            self.ip(
                ns,
                &format!("-6 route add fd00:198:18::/64 via {CLIENT_LAN6}"),
            )?;
        }
        Ok(())
    }

    /// Runs `ip -n <ns> <words of line>` (a setup step: bounded, a failure
    /// exit is an error with ip's message). `ns` is a role or a lab name.
    pub fn ip_ok(&self, ns: &str, line: &str) -> Result<()> {
        self.ip(ns, line)
    }

    /// Writes `value` to `/proc/sys/net/<key>` inside namespace `ns`, e.g.
    /// `lab.sysctl("director", "ipv4/ip_forward", "1")`.
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<()> {
        self.in_ns(ns, || write_sysctl(key, value))
            .map_err(|e| format!("sysctl {key}={value} in {ns}: {e}").into())
    }

    /// Sets the MTU of interface `ifname` in namespace `ns`.
    pub fn set_mtu(&self, ns: &str, ifname: &str, mtu: u32) -> Result<()> {
        self.ip(ns, &format!("link set dev {ifname} mtu {mtu}"))
    }

    /// Puts the VIP (and, in an IPv6 lab, VIP6) on the director's `lo`, so
    /// the director's own stack can serve it (local node).
    pub fn add_director_vip(&self) -> Result<()> {
        self.ip("director", &format!("addr add {VIP}/32 dev lo"))?;
        if self.ipv6 {
            self.ip("director", &format!("-6 addr add {VIP6}/128 dev lo nodad"))?;
        }
        Ok(())
    }

    /// The method real server `i` (1-based) is set up for.
    pub fn method(&self, i: usize) -> Fwd {
        self.rs_addr(i); // bounds check
        self.methods[i - 1]
    }

    /// Whether this is a dual-stack lab.
    pub fn ipv6(&self) -> bool {
        self.ipv6
    }

    /// The IPv6 address of real server `i` (1-based): fd00:198:18:1::(10+i),
    /// the decimal number written as the last group.
    pub fn rs_addr6(&self, i: usize) -> Ipv6Addr {
        v6_of(self.rs_addr(i))
    }

    /// The `lvs-tundecap` process of TUN real server `i`, if it is one.
    pub fn tundecap(&self, i: usize) -> Option<ProcId> {
        self.tundecaps.get(&i).copied()
    }

    /// Starts `lvs-testsrv` named `name` in namespace `ns` with the given
    /// listeners (`http` and `udp` addresses as `ip:port` or `[ip6]:port`)
    /// and extra options (e.g. `--bind-any`), and waits (at most 5 s) until
    /// it is ready.
    pub fn spawn_testsrv_in(
        &self,
        ns: &str,
        name: &str,
        http: &[SocketAddr],
        udp: &[SocketAddr],
        extra: &[&str],
    ) -> Result<ProcId> {
        let http: Vec<String> = http.iter().map(ToString::to_string).collect();
        let udp: Vec<String> = udp.iter().map(ToString::to_string).collect();
        let mut args = vec![env!("CARGO_BIN_EXE_lvs-testsrv"), "--name", name];
        args.extend(extra);
        for h in &http {
            args.extend(["--http", h]);
        }
        for u in &udp {
            args.extend(["--udp", u]);
        }
        let id = self.spawn(ns, &args)?;
        self.wait_for_line(id, "ready", Duration::from_secs(5))?;
        Ok(id)
    }

    /// Starts `lvs-testsrv` (named `rs<i>`) in real server `i`, listening
    /// where its method needs: a NAT server on its own address(es); a DR or
    /// TUN server HTTP on `0.0.0.0:port` (and `[::]:port`) and UDP on the
    /// VIP (and VIP6), since a UDP reply must leave from the VIP.
    pub fn spawn_rs_server(
        &self,
        i: usize,
        http_port: Option<u16>,
        udp_port: Option<u16>,
    ) -> Result<ProcId> {
        let v6 = self.ipv6;
        let (http_addrs, udp_addrs): (Vec<IpAddr>, Vec<IpAddr>) = match self.method(i) {
            Fwd::Nat => {
                let mut a = vec![IpAddr::V4(self.rs_addr(i))];
                if v6 {
                    a.push(IpAddr::V6(self.rs_addr6(i)));
                }
                (a.clone(), a)
            }
            Fwd::Dr | Fwd::Tun => {
                let (mut h, mut u) = (
                    vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
                    vec![IpAddr::V4(VIP)],
                );
                if v6 {
                    h.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
                    u.push(IpAddr::V6(VIP6));
                }
                (h, u)
            }
        };
        let at = |addrs: &[IpAddr], port: Option<u16>| -> Vec<SocketAddr> {
            port.map(|p| addrs.iter().map(|a| SocketAddr::new(*a, p)).collect())
                .unwrap_or_default()
        };
        self.spawn_testsrv_in(
            &format!("rs{i}"),
            &format!("rs{i}"),
            &at(&http_addrs, http_port),
            &at(&udp_addrs, udp_port),
            &[],
        )
    }

    /// Runs `ip -n <ns of role> <words of line>`.
    fn ip(&self, role: &str, line: &str) -> Result<()> {
        let mut args = vec!["-n", self.ns(role)];
        args.extend(words(line));
        setup(cmd("ip", &args))
    }

    /// The namespace name of a role: "client", "director", "lan", "rs1", ...
    /// Panics on a role this lab does not have.
    pub fn ns(&self, role: &str) -> &str {
        self.resolve(role)
    }

    /// Every namespace this lab created, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        self.roles.iter().map(|(_, n)| n.clone()).collect()
    }

    /// The run-unique prefix of this lab's namespace names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many real servers the lab has.
    pub fn real_servers(&self) -> usize {
        self.real_servers
    }

    /// The address of real server `i` (1-based): 198.18.1.(10+i).
    pub fn rs_addr(&self, i: usize) -> Ipv4Addr {
        assert!(
            (1..=self.real_servers).contains(&i),
            "no real server {i} in a lab of {}",
            self.real_servers
        );
        let last = u8::try_from(10 + i).expect("at most 200 real servers");
        Ipv4Addr::new(198, 18, 1, last)
    }

    /// Accepts a role or the full name of one of this lab's namespaces and
    /// returns the namespace name; panics on anything else, so nothing runs
    /// in a namespace the lab did not make.
    fn resolve<'a>(&'a self, ns: &str) -> &'a str {
        self.roles
            .iter()
            .find(|(role, name)| role == ns || name == ns)
            .map(|(_, name)| name.as_str())
            .unwrap_or_else(|| panic!("lab {} has no namespace {ns:?}", self.prefix))
    }

    fn ns_cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.resolve(ns)]).args(args);
        c.current_dir(&self.dir);
        c
    }

    /// Runs `args` in namespace `ns` (a role or one of the lab's names) and
    /// returns its output; a command still running after [`EXEC_TIMEOUT`] is
    /// killed (its stderr then says so). Panics if it cannot be started.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        self.exec_timeout(ns, args, EXEC_TIMEOUT)
    }

    /// [`Lab::exec`] with its own time bound.
    pub fn exec_timeout(&self, ns: &str, args: &[&str], timeout: Duration) -> Output {
        run_bounded(self.ns_cmd(ns, args), timeout)
            .unwrap_or_else(|e| panic!("running {args:?} in {ns}: {e}"))
    }

    /// [`Lab::exec`], but a failure exit is an error; returns stdout.
    pub fn exec_ok(&self, ns: &str, args: &[&str]) -> Result<String> {
        check(&format!("{args:?} in {ns}"), self.exec(ns, args))
    }

    /// Starts `args` in namespace `ns` in the background, stdout and stderr
    /// going to a log file in [`Lab::dir`]. The lab stops it on drop.
    pub fn spawn(&self, ns: &str, args: &[&str]) -> Result<ProcId> {
        let program = args.first().ok_or("spawn: no command")?;
        let base = Path::new(program)
            .file_name()
            .map_or_else(|| "proc".into(), |f| f.to_string_lossy().into_owned());
        let mut procs = lock(&self.procs);
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        let log = self.dir.join(format!("{n}-{base}.log"));
        let file = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut c = self.ns_cmd(ns, args);
        c.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // `ip netns exec` execs the command, so the child's pid is its pid.
        let child = c
            .spawn()
            .map_err(|e| format!("spawning {args:?} in {ns}: {e}"))?;
        let id = ProcId(child.id());
        lock(&self.logs).insert(id.0, log.clone());
        procs.push(Proc {
            child,
            name: format!("{base} in {ns}"),
            log,
        });
        Ok(id)
    }

    /// The log (stdout and stderr) of a spawned process so far; still
    /// there after [`Lab::stop`].
    pub fn log(&self, id: ProcId) -> String {
        lock(&self.logs)
            .get(&id.0)
            .and_then(|path| fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Whether a spawned process is still running.
    pub fn is_running(&self, id: ProcId) -> bool {
        let mut procs = lock(&self.procs);
        procs
            .iter_mut()
            .find(|p| p.child.id() == id.0)
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// Waits (at most `timeout`) until a line of the process's log equals
    /// `line`; fails early, with the log, if the process exits.
    pub fn wait_for_line(&self, id: ProcId, line: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log(id);
            if log.lines().any(|l| l.trim_end() == line) {
                return Ok(());
            }
            if !self.is_running(id) {
                return Err(format!("process {} exited before {line:?}; log:\n{log}", id.0).into());
            }
            if Instant::now() >= deadline {
                return Err(
                    format!("no {line:?} from {} within {timeout:?}; log:\n{log}", id.0).into(),
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops a spawned process: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&self, id: ProcId) -> Result<ExitStatus> {
        let proc = {
            let mut procs = lock(&self.procs);
            let at = procs
                .iter()
                .position(|p| p.child.id() == id.0)
                .ok_or_else(|| format!("no process {} in this lab", id.0))?;
            procs.remove(at)
        };
        let mut statuses = terminate(vec![proc], STOP_GRACE);
        Ok(statuses
            .pop()
            .flatten()
            .ok_or("could not reap the process")?)
    }

    /// Starts `lvs-testsrv` in real server `rs` on its address, serving HTTP
    /// and/or UDP on the given ports, and waits (at most 5 s) until it is
    /// ready. It answers with the name `rs<rs>`.
    pub fn spawn_testsrv(
        &self,
        rs: usize,
        http_port: Option<u16>,
        udp_port: Option<u16>,
    ) -> Result<ProcId> {
        let addr = self.rs_addr(rs);
        let name = format!("rs{rs}");
        let http = http_port.map(|p| format!("{addr}:{p}"));
        let udp = udp_port.map(|p| format!("{addr}:{p}"));
        let mut args = vec![env!("CARGO_BIN_EXE_lvs-testsrv"), "--name", &name];
        if let Some(h) = &http {
            args.extend(["--http", h]);
        }
        if let Some(u) = &udp {
            args.extend(["--udp", u]);
        }
        let id = self.spawn(&name, &args)?;
        self.wait_for_line(id, "ready", Duration::from_secs(5))?;
        Ok(id)
    }

    /// The admin socket lvsd was (or will be, by default) told to use:
    /// `<dir>/lvsd.sock` unless the config given to [`Lab::start_lvsd`]
    /// names another.
    pub fn socket_path(&self) -> PathBuf {
        lock(&self.socket).clone()
    }

    /// Writes `config_toml` to `<dir>/lvsd.toml`, starts lvsd in the
    /// director namespace with it, and waits (at most 10 s) until the admin
    /// socket named in the config (a `socket = "..."`-style key, else
    /// [`Lab::socket_path`]) accepts connections.
    pub fn start_lvsd(&self, config_toml: &str) -> Result<()> {
        self.start_lvsd_under(&[], config_toml)
    }

    /// As [`Lab::start_lvsd`], with lvsd's command line after `wrapper`
    /// (for example `setpriv` with options, to drop a capability).
    pub fn start_lvsd_under(&self, wrapper: &[&str], config_toml: &str) -> Result<()> {
        let bin = lvsd_bin()?;
        let config = self.dir.join("lvsd.toml");
        fs::write(&config, config_toml)
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        // A relative path is taken from the lab's directory (lvsd's cwd);
        // an absolute one stays as it is.
        let socket = self
            .dir
            .join(socket_in_config(config_toml).unwrap_or_else(|| "lvsd.sock".to_owned()));
        *lock(&self.socket) = socket.clone();
        let mut args = wrapper.to_vec();
        args.extend([path_str(&bin)?, "--config", path_str(&config)?]);
        let id = self.spawn("director", &args)?;
        *lock(&self.lvsd) = Some(id);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if UnixStream::connect(&socket).is_ok() {
                return Ok(());
            }
            if !self.is_running(id) {
                return Err(format!("lvsd exited during startup; log:\n{}", self.log(id)).into());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "lvsd's admin socket {} did not answer within 10 s; log:\n{}",
                    socket.display(),
                    self.log(id)
                )
                .into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running lvsd, if [`Lab::start_lvsd`] started one.
    pub fn lvsd(&self) -> Option<ProcId> {
        *lock(&self.lvsd)
    }

    /// lvsd's log so far (empty when it was not started).
    pub fn lvsd_log(&self) -> String {
        self.lvsd().map(|id| self.log(id)).unwrap_or_default()
    }

    /// Stops lvsd (SIGTERM, then SIGKILL after 5 s) and returns its status.
    pub fn stop_lvsd(&self) -> Result<ExitStatus> {
        let id = lock(&self.lvsd).take().ok_or("lvsd is not running")?;
        self.stop(id)
    }

    /// [`Lab::lvsadm`] that must succeed; its stdout.
    pub fn lvsadm_ok(&self, args: &[&str]) -> String {
        let out = self.lvsadm(args);
        assert!(
            out.status.success(),
            "lvsadm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// lvsd's own counters (`Op::DaemonStats`), straight from the admin
    /// socket.
    /// Bounded: a read or write that takes longer than [`ADMIN_TIMEOUT`]
    /// panics with lvsd's log.
    pub fn daemon_stats(&self) -> lvsd_proto::DaemonStats {
        let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
            panic!("{what}: {e}; lvsd log:\n{}", self.lvsd_log())
        };
        let s = UnixStream::connect(self.socket_path())
            .unwrap_or_else(|e| fail("connecting to lvsd's admin socket", &e));
        s.set_read_timeout(Some(ADMIN_TIMEOUT))
            .and_then(|()| s.set_write_timeout(Some(ADMIN_TIMEOUT)))
            .unwrap_or_else(|e| fail("setting the admin socket's timeouts", &e));
        let mut w = s
            .try_clone()
            .unwrap_or_else(|e| fail("cloning the admin socket", &e));
        let ask = lvsd_proto::Request::new(lvsd_proto::Op::DaemonStats);
        lvsd_proto::write_message(&mut w, &ask)
            .unwrap_or_else(|e| fail("asking lvsd for DaemonStats", &e));
        match lvsd_proto::read_message(&mut std::io::BufReader::new(s)) {
            Ok(lvsd_proto::Response::DaemonStats(d)) => d,
            Ok(other) => fail("unexpected answer to DaemonStats", &format!("{other:?}")),
            Err(e) => fail("reading lvsd's answer to DaemonStats", &e),
        }
    }

    /// Runs `lvsadm --socket <socket> args...` (from the host namespace: the
    /// admin socket is a file in [`Lab::dir`]), bounded by [`EXEC_TIMEOUT`].
    pub fn lvsadm(&self, args: &[&str]) -> Output {
        let bin = lvsadm_bin().unwrap_or_else(|e| panic!("{e}"));
        let mut c = Command::new(bin);
        c.arg("--socket")
            .arg(self.socket_path())
            .args(args)
            .current_dir(&self.dir);
        run_bounded(c, EXEC_TIMEOUT).unwrap_or_else(|e| panic!("running lvsadm {args:?}: {e}"))
    }

    /// Runs `f` on a thread that has joined namespace `ns` (a role or one of
    /// the lab's names), e.g. to use std sockets from the client, and returns
    /// its result; a panic in `f` is resumed here.
    pub fn in_ns<T: Send, F: FnOnce() -> T + Send>(&self, ns: &str, f: F) -> T {
        let path = Path::new(NETNS_DIR).join(self.resolve(ns));
        thread::scope(|s| {
            let thread = s.spawn(move || {
                let file =
                    File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The MAC address of interface `ifname` in namespace `ns`, as `ip`
    /// shows it (lower-case, colon-separated).
    pub fn mac(&self, ns: &str, ifname: &str) -> Result<String> {
        let out = setup_output(cmd(
            "ip",
            &["-n", self.resolve(ns), "-j", "link", "show", ifname],
        ))?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        v[0]["address"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no address for {ifname} in {ns}: {out}").into())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let procs = std::mem::take(&mut *lock(&self.procs));
        if thread::panicking() {
            for p in &procs {
                let log = fs::read_to_string(&p.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!("--- lab {}: last lines of {} ---", self.prefix, p.name);
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
        terminate(procs, STOP_GRACE);

        // Anything else still inside the lab's namespaces was started there
        // by this test (the names are unique to the run): kill it, or the
        // namespace would stay alive.
        for (_, name) in &self.roles {
            if let Ok(pids) = setup_output(cmd("ip", &["netns", "pids", name])) {
                for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        for (_, name) in self.roles.iter().rev() {
            if let Err(e) = setup(cmd("ip", &["netns", "del", name])) {
                eprintln!("lab {}: deleting namespace {name}: {e}", self.prefix);
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("lab {}: removing {}: {e}", self.prefix, self.dir.display());
        }
    }
}

/// Turns IPv6 off (no ND or MLD frames in the counts) and makes sure the
/// kernel does not forward (new namespaces inherit IPv4 settings from the
/// host's). Runs on a thread inside the namespace: /proc/sys/net shows the
/// caller's namespace.
fn quiet_namespace() -> io::Result<()> {
    for (key, value) in [
        ("ipv6/conf/all/disable_ipv6", "1"),
        ("ipv6/conf/default/disable_ipv6", "1"),
        ("ipv4/ip_forward", "0"),
    ] {
        fs::write(format!("/proc/sys/net/{key}"), value)
            .map_err(|e| io::Error::new(e.kind(), format!("{key}: {e}")))?;
    }
    Ok(())
}

/// IPv6 on, quietly: no DAD, no router solicitations, no RA, no forwarding
/// (IPv4 as in [`quiet_namespace`]). Runs inside the namespace, before its
/// interfaces are made (they copy `default`).
fn dual_stack_namespace() -> io::Result<()> {
    for (key, value) in [
        ("ipv6/conf/all/disable_ipv6", "0"),
        ("ipv6/conf/default/disable_ipv6", "0"),
        ("ipv6/conf/all/forwarding", "0"),
        ("ipv4/ip_forward", "0"),
    ] {
        write_sysctl(key, value)?;
    }
    for scope in ["all", "default"] {
        for (key, value) in [
            ("accept_dad", "0"),
            ("dad_transmits", "0"),
            ("router_solicitations", "0"),
            ("accept_ra", "0"),
            ("autoconf", "0"),
        ] {
            write_sysctl(&format!("ipv6/conf/{scope}/{key}"), value)?;
        }
    }
    Ok(())
}

/// Writes `/proc/sys/net/<key>` of the calling thread's namespace.
fn write_sysctl(key: &str, value: &str) -> io::Result<()> {
    fs::write(format!("/proc/sys/net/{key}"), value)
        .map_err(|e| io::Error::new(e.kind(), format!("{key}: {e}")))
}

/// The IPv6 address of the interface holding IPv4 `198.18.s.h`:
/// `fd00:198:18:s::h`, the decimal numbers written as hex groups
/// (198.18.1.11 -> fd00:198:18:1::11).
pub fn v6_of(addr: Ipv4Addr) -> Ipv6Addr {
    let [_, _, s, h] = addr.octets();
    let text = if s == 0 {
        format!("fd00:198:18::{h}")
    } else {
        format!("fd00:198:18:{s}::{h}")
    };
    text.parse().expect("a valid IPv6 address")
}

/// `02:00:a:b:c:d` for the interface that holds address `a.b.c.d`.
pub fn mac_of(addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// `02:01:a:b:c:d` for the bridge-side end of the veth whose other end
/// holds `a.b.c.d`.
pub fn peer_mac_of(addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("02:01:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Stops processes: SIGTERM to all, a shared grace period, then SIGKILL to
/// those left; reaps every one. Returns each one's status if it was reaped.
fn terminate(mut procs: Vec<Proc>, grace: Duration) -> Vec<Option<ExitStatus>> {
    let mut statuses: Vec<Option<ExitStatus>> = procs
        .iter_mut()
        .map(|p| p.child.try_wait().ok().flatten())
        .collect();
    for (p, status) in procs.iter().zip(&statuses) {
        if status.is_none() {
            // Not yet reaped, so the pid is still this child's.
            if let Ok(pid) = i32::try_from(p.child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + grace;
    while statuses.iter().any(Option::is_none) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        for (p, status) in procs.iter_mut().zip(statuses.iter_mut()) {
            if status.is_none() {
                *status = p.child.try_wait().ok().flatten();
            }
        }
    }
    for (p, status) in procs.iter_mut().zip(statuses.iter_mut()) {
        if status.is_none() {
            eprintln!("lab: {} ignored SIGTERM for {grace:?}; killing it", p.name);
            let _ = p.child.kill();
            *status = p.child.wait().ok();
        }
    }
    statuses
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The words of a command line built from names without spaces.
fn words(line: &str) -> Vec<&str> {
    line.split_ascii_whitespace().collect()
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// Runs a setup command, bounded; a failure exit is an error with stderr.
fn setup(c: Command) -> Result<()> {
    setup_output(c).map(drop)
}

fn setup_output(c: Command) -> Result<String> {
    let what = format!("{c:?}");
    let out = run_bounded(c, SETUP_TIMEOUT).map_err(|e| format!("{what}: {e}"))?;
    check(&what, out)
}

#[path = "../common/bounded.rs"]
mod bounded;
pub use bounded::{check, run_bounded};

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| format!("non-UTF-8 path {}", p.display()).into())
}

/// The value of the first `...socket... = "path"` key in a TOML text.
fn socket_in_config(toml: &str) -> Option<String> {
    toml.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        let key = key.trim();
        if key.starts_with('#') || !key.contains("socket") {
            return None;
        }
        let value = value.trim();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let rest = &value[1..];
        Some(rest[..rest.find(quote)?].to_owned())
    })
}

/// Finds a workspace binary: `$env_var` if set, else next to the test
/// binary's directory (`target/<profile>/deps/..`).
fn workspace_bin(name: &str, env_var: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{env_var}={} is not a file", p.display()).into())
        };
    }
    let p = bounded::built_bin(name)?;
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{name} not found at {} (set {env_var}, or run `cargo build --workspace` first: \
             tests/run.sh does)",
            p.display()
        )
        .into())
    }
}

/// The lvsd binary ($LVSD_BIN, or target/<profile>/lvsd).
pub fn lvsd_bin() -> Result<PathBuf> {
    workspace_bin("lvsd", "LVSD_BIN")
}

/// The lvsadm binary ($LVSADM_BIN, or target/<profile>/lvsadm).
pub fn lvsadm_bin() -> Result<PathBuf> {
    workspace_bin("lvsadm", "LVSADM_BIN")
}

/// Fetches `url` (its path gets a numeric suffix: `<url>/1` .. `<url>/n`)
/// `n` times from the client, each on its own connection (`Connection:
/// close`), with ONE curl process, and returns the response bodies, one per
/// line. Failed fetches give no line (and curl's errors go to stderr), so
/// `len() < n` means some failed. Bounded: 2 s to connect, 5 s per fetch,
/// 30 s + 50 ms per fetch in all.
pub fn curl_many(lab: &Lab, url: &str, n: usize) -> Vec<String> {
    curl_many_from(lab, "client", url, n)
}

/// [`curl_many`] from namespace `ns` instead of the client.
pub fn curl_many_from(lab: &Lab, ns: &str, url: &str, n: usize) -> Vec<String> {
    assert!(n > 0, "curl_many: n must be positive");
    let base = url.trim_end_matches('/');
    let glob = format!("{base}/[1-{n}]");
    let timeout = Duration::from_millis(30_000 + 50 * n as u64);
    let out = lab.exec_timeout(
        ns,
        &[
            "curl",
            "-sS",
            "--connect-timeout",
            "2",
            "--max-time",
            "5",
            "-H",
            "Connection: close",
            &glob,
        ],
        timeout,
    );
    if !out.stderr.is_empty() {
        eprintln!(
            "curl_many {glob} in {ns} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One HTTP GET from namespace `ns`, bounded (2 s to connect, 5 s in all);
/// returns the body, or an error with curl's message. `-g`: brackets in the
/// URL are an IPv6 address, not a glob.
pub fn curl(lab: &Lab, ns: &str, url: &str) -> Result<String> {
    lab.exec_ok(
        ns,
        &[
            "curl",
            "-g",
            "-sS",
            "--connect-timeout",
            "2",
            "--max-time",
            "5",
            url,
        ],
    )
}

/// How often each distinct line occurs (e.g. which real server answered).
pub fn count(lines: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line.clone()).or_insert(0) += 1;
    }
    counts
}
