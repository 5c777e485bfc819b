//! Starting and stopping the daemon: the order in which the parts come up and
//! go down.
//!
//! Start: config (nothing touched if it is bad) → the network namespace
//! claimed and the admin socket found free (a second lvsd stops here, having
//! touched nothing) → interfaces → rules →
//! kernel filter → packet sockets joined to the fanout group in shard order
//! → shard threads → neighbour resolver → admin socket. Stop (SIGTERM,
//! SIGINT): shards and resolver end, the kernel filter and the socket file
//! are removed. SIGHUP reloads the config file through [`Control::apply`],
//! the same path as `lvsadm` changes.

use crate::admin::server::{self, Access};
use crate::admin::{Control, ShardHandle};
use crate::config::{self, Backend, Config, ConfigError, ShardPolicy};
use crate::dataplane::{NeighTable, ShardCounters};
use crate::io::ifaces::{self, IfaceError};
use crate::io::kernel::{KernelError, KernelFilter};
use crate::io::neigh::{self, NeighCounters};
use crate::io::shard::{self, ShardParams};
use crate::io::sys;
use crate::rules::Model;
use arc_swap::ArcSwap;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// a bad configuration file
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// an interface problem
    #[error("{0}")]
    Iface(#[from] IfaceError),
    /// the nftables table could not be installed
    #[error("{0}")]
    Kernel(#[from] KernelError),
    /// the admin socket could not be set up
    #[error("{0}")]
    Admin(#[from] server::ServerError),
    /// the admin group does not exist
    #[error("admin group '{0}' does not exist")]
    NoGroup(String),
    /// a system resource failed
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    /// a shard stopped on an error
    #[error("shard {0} failed: {1}")]
    Shard(usize, std::io::Error),
    /// another lvsd holds this network namespace
    #[error(
        "another lvsd is running in this network namespace (one per namespace: the nftables \
         table, the XDP programs and the local-node device are the namespace's); nothing was changed"
    )]
    Running,
}

impl DaemonError {
    /// The process exit code: 2 for a bad config, 1 for anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::Config(_) => 2,
            _ => 1,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |err| DaemonError::Io { what, err }
}

/// Runs lvsd with the config at `path` until SIGTERM or SIGINT.
pub fn run(path: &Path) -> Result<(), DaemonError> {
    let mut cfg = config::load(path)?;
    init_logging(&cfg.daemon.log);
    // Before anything is set up: what a second lvsd would set up, and undo
    // on its way out, is the first one's.
    let _namespace = claim_namespace()?;
    server::check_free(&cfg.daemon.admin_socket)?;
    let ifaces = Arc::new(ArcSwap::from_pointee(ifaces::discover(
        &cfg.daemon.interfaces,
    )?));
    let xdp = start_xdp(&cfg.daemon, &ifaces.load())?;
    if let Some(b) = &xdp {
        // One shard per set of AF_XDP sockets (see docs/architecture.md).
        cfg.daemon.shards = b.shards.len();
    }
    let d = &cfg.daemon;
    let admin_gid = match &d.admin_group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| DaemonError::NoGroup(name.clone()))?
                .gid
                .as_raw(),
        ),
        None => None,
    };
    let mut model = Model::new(d.shards);
    if let Err(e) = model.apply(&cfg.reload_batch()) {
        // load() validated every operation; this is a bug if it happens.
        return Err(DaemonError::Io {
            what: "applying the configuration".into(),
            err: std::io::Error::other(e.message),
        });
    }
    // From here on, SIGHUP, SIGINT and SIGTERM are queued for the main loop.
    let mut signals = Signals::new([SIGHUP, SIGINT, SIGTERM]).map_err(io_err("signals"))?;

    let kernel = if d.kernel_filter {
        Some(KernelFilter::install(&ifaces.load())?)
    } else {
        None
    };
    let conn_table_size = (d.conn_limit * d.shards) as u64;
    let control = Arc::new(Mutex::new(Control::new(
        model,
        ifaces.clone(),
        kernel,
        conn_table_size,
    )));
    let (xsk, attached) = match xdp {
        Some(b) => {
            let name = b.describe();
            tracing::info!("backend: {name}");
            lock(&control).set_xdp(b.filter, name);
            (b.shards, Some(b.attached))
        }
        None => (Vec::new(), None),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut socket_file = None;
    let result = start_and_wait(
        &cfg,
        path,
        &control,
        &ifaces,
        admin_gid,
        &stop,
        &mut signals,
        xsk,
        &mut socket_file,
    );
    // The programs leave the interfaces only after the shards stopped.
    drop(attached);

    stop.store(true, Ordering::Relaxed);
    let mut c = lock(&control);
    if let Some(k) = c.take_kernel() {
        k.remove();
    }
    drop(c);
    // Only the file this process made: after a failed start the path may
    // be another daemon's socket.
    if socket_file.is_some() && socket_file == file_id(&d.admin_socket) {
        let _ = std::fs::remove_file(&d.admin_socket);
    }
    tracing::info!("lvsd stopped");
    result
}

/// Claims the network namespace for this process: an abstract Unix socket
/// name is unique within a network namespace and is let go when its
/// process ends, however it ends.
fn claim_namespace() -> Result<std::os::unix::net::UnixDatagram, DaemonError> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let addr = SocketAddr::from_abstract_name(b"lvsd").map_err(io_err("the namespace claim"))?;
    UnixDatagram::bind_addr(&addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            DaemonError::Running
        } else {
            io_err("claiming the network namespace")(e)
        }
    })
}

/// A file's device and inode, to tell it from one made in its place.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

fn lock(c: &Mutex<Control>) -> std::sync::MutexGuard<'_, Control> {
    match c.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

// Everything `run` set up, handed over once; a struct would only rename it.
#[allow(clippy::too_many_arguments)]
fn start_and_wait(
    cfg: &Config,
    path: &Path,
    control: &Arc<Mutex<Control>>,
    ifaces: &Arc<ArcSwap<crate::dataplane::Interfaces>>,
    admin_gid: Option<u32>,
    stop: &Arc<AtomicBool>,
    signals: &mut Signals,
    xsk: Vec<crate::io::xsk::XskSet>,
    socket_file: &mut Option<(u64, u64)>,
) -> Result<(), DaemonError> {
    let d = &cfg.daemon;
    lock(control).sync_kernel();
    let rules = lock(control).rules.clone();
    let neigh_table = Arc::new(ArcSwap::from_pointee(NeighTable::default()));

    // Sockets are made and joined to the fanout group here, in shard order,
    // so the group's member order is the shard order.
    let group = u16::try_from(std::process::id() & 0xffff).unwrap_or(1);
    let mut sockets = Vec::with_capacity(d.shards);
    let ifindexes: Vec<u32> = ifaces.load().list.iter().map(|i| i.ifindex).collect();
    for i in 0..d.shards {
        let s = sys::packet_socket(sys::ETH_P_ALL_BE, 0)
            .map_err(io_err(format!("shard {i}: packet socket")))?;
        sys::tune_data_socket(s.as_raw_fd(), 8 << 20)
            .map_err(io_err(format!("shard {i}: socket options")))?;
        sys::attach_filter(
            s.as_raw_fd(),
            &crate::io::fanout::interface_filter(&ifindexes),
        )
        .map_err(io_err(format!("shard {i}: socket filter")))?;
        if d.shards > 1 {
            sys::join_fanout(s.as_raw_fd(), group)
                .map_err(io_err(format!("shard {i}: fanout group")))?;
        }
        sockets.push(s);
    }

    // The local-node device; without it, local-node packets are dropped.
    let local_tun = match crate::io::tun::open() {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!("no local-node device ({e}): real servers at the director's own addresses will not be served");
            None
        }
    };
    let local_fd = local_tun.as_ref().map(AsRawFd::as_raw_fd);

    // Shard i takes the i-th set of AF_XDP sockets (none without XDP).
    let xdp_on = !xsk.is_empty();
    let mut xsk = xsk.into_iter();

    let epoch = Instant::now();
    let (done_tx, done_rx) = mpsc::channel::<(usize, std::io::Result<()>)>();
    // Declared after the TUN device, so dropped (stopped and joined) before
    // it closes, also when a step below fails.
    let mut threads = Threads {
        stop,
        handles: Vec::new(),
    };
    for (id, socket) in sockets.into_iter().enumerate() {
        let (req_tx, req_rx) = mpsc::channel();
        let counters = Arc::new(ShardCounters::default());
        lock(control).add_shard(ShardHandle {
            counters: counters.clone(),
            requests: req_tx,
        });
        let params = ShardParams {
            id,
            socket,
            ifaces: ifaces.clone(),
            rules: rules.clone(),
            neigh: neigh_table.clone(),
            counters,
            conn_capacity: d.conn_limit,
            stop: stop.clone(),
            requests: req_rx,
            epoch,
            buffers: d.buffers,
            buffer_size: d.buffer_size,
            fanout_owner: d.shards > 1 && id == 0,
            local_tun: local_fd,
            xsk: xsk.next(),
            busy_poll: Duration::from_micros(d.busy_poll_us),
        };
        let done = done_tx.clone();
        let cpu = (!d.cpus.is_empty()).then(|| d.cpus[id % d.cpus.len()]);
        let (nice, policy) = (d.shard_nice, d.shard_policy);
        let t = std::thread::Builder::new()
            .name(format!("lvsd-shard{id}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin(id, cpu);
                }
                schedule(id, policy, nice);
                let r = shard::run(params);
                let _ = done.send((id, r));
            })
            .map_err(io_err("starting a shard thread"))?;
        threads.handles.push(t);
    }

    let neigh_counters = Arc::new(NeighCounters::default());
    lock(control).set_neighbor_counters(neigh_counters.clone());
    {
        let (ifaces, rules, out, counters, stop) = (
            ifaces.clone(),
            rules.clone(),
            neigh_table.clone(),
            neigh_counters.clone(),
            stop.clone(),
        );
        let t = std::thread::Builder::new()
            .name("lvsd-neigh".into())
            .spawn(move || {
                if let Err(e) = neigh::run(ifaces, rules, out, counters, stop) {
                    tracing::error!("neighbour resolver stopped: {e}");
                }
            })
            .map_err(io_err("starting the neighbour resolver"))?;
        threads.handles.push(t);
    }

    // Give the resolver a moment (bounded) to find the real servers, so the
    // first connections after start-up are not dropped as no_neighbor.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline
        && !all_resolved(&rules.load(), &neigh_table.load(), &ifaces.load())
    {
        std::thread::sleep(Duration::from_millis(20));
    }

    // Rates, lingering destinations and the interfaces' MTUs, addresses
    // and MACs, every two seconds.
    {
        let (control, stop, ifaces) = (control.clone(), stop.clone(), ifaces.clone());
        let mtu_limit = xdp_on.then_some(crate::io::xdp::MAX_MTU);
        let t = std::thread::Builder::new()
            .name("lvsd-tick".into())
            .spawn(move || {
                let mut next = Instant::now() + Duration::from_secs(2);
                let mut said = String::new();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if Instant::now() >= next {
                        next += Duration::from_secs(2);
                        match crate::io::ifaces::refresh(&ifaces.load(), mtu_limit) {
                            Ok(Some(new)) => {
                                ifaces.store(Arc::new(new));
                                lock(&control).interfaces_changed();
                            }
                            Ok(None) => said.clear(),
                            // Said once, not every two seconds.
                            Err(e) if e != said => {
                                tracing::error!("{e}");
                                said = e;
                            }
                            Err(_) => {}
                        }
                        lock(&control).tick();
                    }
                }
            })
            .map_err(io_err("starting the estimator"))?;
        threads.handles.push(t);
    }

    let access = Access { admin_gid };
    let listener = server::bind(&d.admin_socket, d.socket_mode, access)?;
    *socket_file = file_id(&d.admin_socket);
    {
        let control = control.clone();
        std::thread::Builder::new()
            .name("lvsd-admin".into())
            .spawn(move || server::serve(listener, access, control))
            .map_err(io_err("starting the admin server"))?;
    }
    tracing::info!(
        "lvsd {} running: {} shard(s) on {}, admin socket {}",
        env!("CARGO_PKG_VERSION"),
        d.shards,
        d.interfaces.join(", "),
        d.admin_socket.display()
    );

    let result = loop {
        if let Ok((id, r)) = done_rx.try_recv() {
            break match r {
                Ok(()) => Ok(()),
                Err(e) => Err(DaemonError::Shard(id, e)),
            };
        }
        let mut quit = false;
        for sig in signals.pending() {
            match sig {
                SIGHUP => reload(path, d, control),
                _ => quit = true,
            }
        }
        if quit {
            break Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(threads);
    drop(local_tun);
    result
}

/// The daemon's threads: told to stop and joined when dropped.
struct Threads<'a> {
    stop: &'a AtomicBool,
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Threads<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.handles.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sets up the XDP backend when the config asks for it, or leaves it to
/// lvsd and XDP can run the shards asked for (one per CPU when `shards` is
/// not set, as many as the interfaces' receive queues allow). With `auto`, a
/// failure means packet sockets, and the log says why.
fn start_xdp(
    d: &config::DaemonConfig,
    ifaces: &crate::dataplane::Interfaces,
) -> Result<Option<crate::io::xdp::Backend>, DaemonError> {
    let shards = crate::io::xdp::shards_for(ifaces, d.shards);
    let wanted = match d.backend {
        Backend::Packet => false,
        Backend::Xdp => true,
        Backend::Auto if d.shards_set && shards < d.shards => {
            tracing::warn!(
                "XDP backend not used: {} shards asked for, the interfaces' receive queues allow {shards}",
                d.shards
            );
            false
        }
        Backend::Auto => true,
    };
    if !wanted {
        return Ok(None);
    }
    if shards < d.shards {
        tracing::info!(
            "XDP backend: {shards} shard(s), as many as the interface with the fewest receive queues has"
        );
    }
    match crate::io::xdp::setup(ifaces, shards) {
        Ok(b) => Ok(Some(b)),
        Err(e) if d.backend == Backend::Auto => {
            tracing::warn!("XDP backend unavailable, using packet sockets: {e}");
            Ok(None)
        }
        Err(err) => Err(DaemonError::Io {
            what: "setting up the XDP backend".into(),
            err,
        }),
    }
}

/// Re-reads the config file and applies its rules as one batch. A bad file
/// changes nothing; daemon settings other than the rules need a restart.
fn reload(path: &Path, running: &config::DaemonConfig, control: &Mutex<Control>) {
    match config::load(path) {
        Err(e) => tracing::error!("reload refused, nothing changed: {e}"),
        Ok(cfg) => {
            let changed = cfg.daemon.changed_from(running);
            if !changed.is_empty() {
                tracing::warn!(
                    "reload applies the rules only; changed [daemon] settings take effect at the next start: {}",
                    changed.join(", ")
                );
            }
            match lock(control).apply(&cfg.reload_batch()) {
                Ok(()) => tracing::info!("reloaded {}", path.display()),
                Err(e) => tracing::error!("reload refused, nothing changed: {e}"),
            }
        }
    }
}

/// Whether every reachable non-local real server has a resolved MAC address.
fn all_resolved(
    rules: &crate::rules::RuleTable,
    neigh: &NeighTable,
    ifaces: &crate::dataplane::Interfaces,
) -> bool {
    rules
        .services
        .iter()
        .flat_map(|s| s.dests.iter())
        .filter(|d| !d.local && ifaces.on_link(d.addr().ip()).is_some())
        .all(|d| neigh.map.contains_key(&d.addr().ip()))
}

/// Sets the calling shard thread's nice value, then its scheduling policy
/// (both are per thread on Linux). Lowering the nice value needs
/// CAP_SYS_NICE (or RLIMIT_NICE); when it fails the thread is left as it
/// was, policy included, with a warning: the policy alone, without the
/// priority, is not a setting anyone measured.
fn schedule(shard: usize, policy: ShardPolicy, nice: i32) {
    let tid = nix::unistd::gettid().as_raw();
    // The `who` argument's type differs between C libraries.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let who = tid as libc::id_t;
    // SAFETY: a plain system call on this thread's id.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(
            "shard {shard}: cannot set nice value {nice}, scheduling left as it was: {e}"
        );
        return;
    }
    let (pol, name) = match policy {
        ShardPolicy::Batch => (libc::SCHED_BATCH, "batch"),
        ShardPolicy::Normal => (libc::SCHED_OTHER, "normal"),
    };
    let param = libc::sched_param { sched_priority: 0 };
    // The system call itself (it keeps the nice value): some C libraries'
    // wrappers refuse outright.
    // SAFETY: `param` is a valid sched_param for the call's duration.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            libc::c_long::from(tid),
            libc::c_long::from(pol),
            &param as *const libc::sched_param,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!("shard {shard}: cannot set scheduling policy {name}: {e}");
    }
}

/// Pins the calling shard thread to `cpu`; a failure is logged, not fatal.
fn pin(shard: usize, cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    let pinned = set
        .set(cpu)
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
    match pinned {
        Ok(()) => tracing::info!("shard {shard} pinned to CPU {cpu}"),
        Err(e) => tracing::warn!("shard {shard}: cannot pin to CPU {cpu}: {e}"),
    }
}
