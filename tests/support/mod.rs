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
//! `ip_forward=0`; every veth end has its offloads off; the bridge has a
//! static FDB entry for every MAC behind it. The interface holding an IPv4
//! address `a.b.c.d` has the MAC `02:00:a:b:c:d` (hex, see [`mac_of`]); its
//! bridge-side peer has `02:01:a:b:c:d`.
//!
//! Dropping the [`Lab`] (also while unwinding from a panic) stops the
//! processes it started, deletes exactly the namespaces it created and
//! removes its temporary directory. While panicking it first prints the tail
//! of every process log, so a failing test shows what lvsd said.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{geteuid, Pid};

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

/// How long [`Lab::exec`] lets a command run before killing it.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a setup command (`ip`, `ethtool`, ...) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
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

/// A set of network namespaces wired as the TESTBED's NAT topology.
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

    /// Builds the NAT topology with `real_servers` real servers (rs1..rsN).
    /// `name` (a short test name) goes into the namespace names.
    pub fn nat(name: &str, real_servers: usize) -> Result<Lab> {
        if !(1..=200).contains(&real_servers) {
            return Err(format!("real_servers must be 1..=200, not {real_servers}").into());
        }
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
        let mut lab = Lab {
            socket: Mutex::new(dir.join("lvsd.sock")),
            dir,
            prefix,
            roles: Vec::new(),
            real_servers,
            procs: Mutex::new(Vec::new()),
            spawned: AtomicUsize::new(0),
            logs: Mutex::new(BTreeMap::new()),
            lvsd: Mutex::new(None),
        };
        // From here on an error drops `lab`, which undoes what was made.
        lab.build_nat()?;
        Ok(lab)
    }

    fn build_nat(&mut self) -> Result<()> {
        let n = self.real_servers;
        let mut roles = vec!["client".to_owned(), "director".to_owned(), "lan".to_owned()];
        roles.extend((1..=n).map(|i| format!("rs{i}")));
        for role in &roles {
            let name = format!("{}-{role}", self.prefix);
            setup(cmd("ip", &["netns", "add", &name]))?;
            self.roles.push((role.clone(), name));
            self.in_ns(role, quiet_namespace)
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
        for (name, addr) in &rs {
            links.push(((name, "eth0", *addr), ("lan", name, None)));
        }
        for ((a_ns, a_if, a_addr), (b_ns, b_if, b_addr)) in links {
            let (a_mac, b_mac) = (
                mac_of(a_addr),
                b_addr.map_or_else(|| peer_mac_of(a_addr), mac_of),
            );
            let b_netns = self.ns(b_ns);
            let add = format!("link add {a_if} address {a_mac} type veth");
            let peer = format!("peer name {b_if} address {b_mac} netns {b_netns}");
            self.ip(a_ns, &format!("{add} {peer}"))?;
            for (ns, ifname, addr) in [(a_ns, a_if, Some(a_addr)), (b_ns, b_if, b_addr)] {
                let offloads =
                    format!("ethtool -K {ifname} tso off gso off gro off tx off rx off sg off");
                setup(self.ns_cmd(ns, &words(&offloads)))?;
                if let Some(addr) = addr {
                    self.ip(ns, &format!("addr add {addr}/24 dev {ifname}"))?;
                    self.ip(ns, &format!("link set {ifname} up"))?;
                }
            }
        }

        // The bridge, with a static FDB entry for the MAC behind each port.
        self.ip("lan", "link add br0 type bridge")?;
        let mut ports = vec![("dir0", DIRECTOR_INT)];
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
        for (name, _) in &rs {
            self.ip(name, &format!("route add default via {DIRECTOR_INT}"))?;
        }
        Ok(())
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
        let id = self.spawn(
            "director",
            &[path_str(&bin)?, "--config", path_str(&config)?],
        )?;
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

/// stdout of a successful command, or an error naming it with its stderr.
fn check(what: &str, out: Output) -> Result<String> {
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

/// Runs a command with stdin closed and its output captured, killing it if
/// it runs longer than `timeout` (a note is then appended to its stderr).
fn run_bounded(mut c: Command, timeout: Duration) -> io::Result<Output> {
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
        stderr.extend_from_slice(format!("\n[lab: killed after {timeout:?}]\n").as_bytes());
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

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
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().ok_or("the test binary has no directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().ok_or("deps/ has no parent")?;
    }
    let p = dir.join(name);
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
/// returns the body, or an error with curl's message.
pub fn curl(lab: &Lab, ns: &str, url: &str) -> Result<String> {
    lab.exec_ok(
        ns,
        &[
            "curl",
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
