//! Helpers for tests/image.rs: building the appliance image, a network of
//! namespaces around a qemu guest, the guest itself, SSH into it.
//!
//! ```text
//!  [cl ns] eth0 198.18.0.2 ==veth== cl0 -+- br0 -+- tap0 ~~ guest ext0 198.18.0.1
//!                                        [vm ns] |           (qemu runs here)
//!  [rs ns] eth0 198.18.1.11 ==veth== rs0 -+- br1 -+- tap1 ~~ guest int0 198.18.1.1
//!                                                            VIP 198.19.0.100
//! ```
//!
//! Everything lives in namespaces a [`Net`] creates, named after a prefix
//! unique to the run (`lvi<pid>-<n>-`); the taps are made inside the vm
//! namespace before qemu opens them, so nothing touches the host's
//! namespace. The client routes the VIPs via the guest, the real server
//! uses the guest as its gateway (NAT). Dropping a [`Net`] kills what runs
//! in its namespaces and deletes them; dropping a [`Vm`] kills qemu.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{geteuid, Pid};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// The guest's addresses, the client's, the real server's, the VIP.
pub const GUEST_EXT: &str = "198.18.0.1";
pub const GUEST_INT: &str = "198.18.1.1";
pub const CLIENT: &str = "198.18.0.2";
pub const RS1: &str = "198.18.1.11";
pub const VIP: &str = "198.19.0.100";
/// The guest's NICs (network.conf names them by these MACs).
pub const MAC_EXT: &str = "52:54:00:12:00:01";
pub const MAC_INT: &str = "52:54:00:12:00:02";

/// Set (non-empty, not 0) to make a missing root or qemu a failure.
pub const REQUIRE_ENV: &str = "LVS_REQUIRE_NETNS";
/// Set to a directory with static lvsd and lvsadm to skip their build.
pub const BINS_ENV: &str = "LVS_IMAGE_BINS";
/// Set (non-empty, not 0) to skip the image tests (they take minutes).
pub const SKIP_ENV: &str = "LVS_SKIP_IMAGE_TESTS";

const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The repository (the root package's directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the image tests can run here: root (namespaces, taps), then qemu
/// and OVMF (installed by image/build.sh --with-test-deps when missing).
/// Prints why not and returns false, or panics when [`REQUIRE_ENV`] says
/// the tests must run. [`SKIP_ENV`] skips them, but not together with
/// [`REQUIRE_ENV`] (a run that must run everything would pass without
/// them): that is a failure saying to set `LVS_REQUIRE_NETNS=0`.
pub fn ready() -> bool {
    let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0");
    if set(SKIP_ENV) {
        assert!(
            !set(REQUIRE_ENV),
            "both {SKIP_ENV} and {REQUIRE_ENV} are set: the image tests are required here; \
             to skip them, set {REQUIRE_ENV}=0 as well"
        );
        println!("skipped: {SKIP_ENV} is set");
        return false;
    }
    let why = if !geteuid().is_root() {
        Some("not running as root (namespaces and tap devices need it)".to_owned())
    } else if !Path::new("/dev/net/tun").exists() {
        Some("no /dev/net/tun".to_owned())
    } else {
        // As root the build installs what is missing (qemu, OVMF, ssh).
        None
    };
    match why {
        None => true,
        Some(why) => {
            let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
            assert!(!required, "{REQUIRE_ENV} is set but: {why}");
            println!("skipped: the image tests need root and qemu ({why})");
            false
        }
    }
}

/// Whether qemu and OVMF are installed (after the build tried to).
pub fn check_qemu() -> Result<()> {
    for p in [
        "/usr/bin/qemu-system-x86_64",
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
        "/usr/bin/ssh",
    ] {
        if !Path::new(p).exists() {
            return Err(
                format!("{p} is missing (image/build.sh --with-test-deps installs it)").into(),
            );
        }
    }
    Ok(())
}

/// Runs image/build.sh with `args` (its output goes to the test's output),
/// bounded by `timeout`.
pub fn build(args: &[&str], timeout: Duration) -> Result<()> {
    let mut c = Command::new(repo().join("image/build.sh"));
    c.args(args).arg("--with-test-deps");
    if let Some(bins) = std::env::var_os(BINS_ENV) {
        c.arg("--bins").arg(bins);
    }
    let started = Instant::now();
    let out = run_bounded(c, timeout)?;
    eprintln!(
        "image/build.sh {} ({:.0?}):\n{}{}",
        args.join(" "),
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("image/build.sh {} failed ({})", args.join(" "), out.status).into())
    }
}

/// A workspace binary next to the test executable (target/debug/NAME).
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let p = bounded::built_bin(name)?;
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run `cargo build --workspace` first",
            p.display()
        )
        .into())
    }
}

/// The namespaces around one guest, and a per-test directory.
pub struct Net {
    pub prefix: String,
    pub dir: PathBuf,
    made: Vec<String>,
    procs: Vec<Child>,
}

impl Net {
    /// Builds the topology (see the module doc). `name` goes into the names.
    pub fn new(name: &str) -> Result<Net> {
        let prefix = format!(
            "lvi{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            name
        );
        let dir = std::env::temp_dir().join(&prefix);
        fs::create_dir_all(&dir)?;
        let mut net = Net {
            prefix,
            dir,
            made: Vec::new(),
            procs: Vec::new(),
        };
        net.wire()?;
        Ok(net)
    }

    /// The full name of role `vm`, `cl` or `rs`.
    pub fn ns(&self, role: &str) -> String {
        assert!(["vm", "cl", "rs"].contains(&role), "no role {role}");
        format!("{}-{role}", self.prefix)
    }

    fn ip(&self, role: &str, line: &str) -> Result<()> {
        let ns = self.ns(role);
        let mut args = vec!["-n", ns.as_str()];
        args.extend(line.split_whitespace());
        setup("ip", &args)
    }

    fn wire(&mut self) -> Result<()> {
        for role in ["vm", "cl", "rs"] {
            let ns = self.ns(role);
            setup("ip", &["netns", "add", &ns])?;
            self.made.push(ns.clone());
            self.ip(role, "link set lo up")?;
            for key in ["all", "default"] {
                setup(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &ns,
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
                    ],
                )?;
            }
        }
        // The vm namespace: two bridges, each with a tap for the guest.
        for (br, tap) in [("br0", "tap0"), ("br1", "tap1")] {
            self.ip("vm", &format!("link add {br} type bridge"))?;
            self.ip("vm", &format!("tuntap add dev {tap} mode tap"))?;
            self.ip("vm", &format!("link set {tap} master {br} up"))?;
            self.ip("vm", &format!("link set {br} up"))?;
        }
        let vm = self.ns("vm");
        for (role, port, br, addr) in [("cl", "cl0", "br0", CLIENT), ("rs", "rs0", "br1", RS1)] {
            self.ip(
                role,
                &format!("link add eth0 type veth peer name {port} netns {vm}"),
            )?;
            self.ip("vm", &format!("link set {port} master {br} up"))?;
            self.ip(role, &format!("addr add {addr}/24 dev eth0"))?;
            self.ip(role, "link set eth0 up")?;
        }
        self.ip("cl", &format!("route add 198.19.0.0/16 via {GUEST_EXT}"))?;
        self.ip("rs", &format!("route add default via {GUEST_INT}"))?;
        Ok(())
    }

    /// A command run in namespace `role`.
    pub fn cmd(&self, role: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role), program]);
        c
    }

    /// Starts a background process in `role` (stopped on drop); its output
    /// goes to `<dir>/<log>`.
    pub fn spawn(&mut self, role: &str, args: &[&str], log: &str) -> Result<()> {
        let file = fs::File::create(self.dir.join(log))?;
        let mut c = self.cmd(role, args[0]);
        c.args(&args[1..])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        self.procs.push(c.spawn()?);
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        // Anything else still in the namespaces was started by this test.
        for ns in &self.made {
            let mut pids = Command::new("ip");
            pids.args(["netns", "pids", ns]);
            if let Ok(out) = run_bounded(pids, SETUP_TIMEOUT) {
                for pid in String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        for ns in self.made.iter().rev() {
            if let Err(e) = setup("ip", &["netns", "del", ns]) {
                eprintln!("{}: deleting {ns}: {e}", self.prefix);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// How the guest's firmware boots it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Uefi,
    Bios,
}

/// A qemu guest in the vm namespace of a [`Net`], its serial console in a
/// file.
pub struct Vm {
    child: Child,
    pub serial: PathBuf,
    pub started: Instant,
}

impl Vm {
    /// Boots `disk` (raw) under software emulation, NICs on tap0 and tap1.
    pub fn boot(net: &Net, disk: &Path, fw: Firmware, name: &str) -> Result<Vm> {
        let serial = net.dir.join(format!("{name}-serial.log"));
        let mut c = net.cmd("vm", "qemu-system-x86_64");
        // One vCPU: under software emulation on a busy 2-core host, an SMP
        // guest's CPUs starve each other and the guest kernel can stall at
        // boot waiting for its other CPU.
        c.args(["-accel", "tcg", "-m", "512", "-smp", "1"])
            .args(["-display", "none", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", disk.display()));
        if fw == Firmware::Uefi {
            let vars = net.dir.join(format!("{name}-vars.fd"));
            fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)?;
            c.args([
                "-drive",
                "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            ])
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
        }
        for (i, mac) in [MAC_EXT, MAC_INT].iter().enumerate() {
            c.arg("-netdev")
                .arg(format!("tap,id=n{i},ifname=tap{i},script=no,downscript=no"))
                .arg("-device")
                .arg(format!("virtio-net-pci,netdev=n{i},mac={mac}"));
        }
        let log = fs::File::create(net.dir.join(format!("{name}-qemu.log")))?;
        c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = c.spawn()?;
        Ok(Vm {
            child,
            serial,
            started: Instant::now(),
        })
    }

    /// The console so far.
    pub fn console(&self) -> String {
        fs::read(&self.serial)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// How many bytes the console has; a mark for [`Vm::wait_for`].
    pub fn mark(&self) -> usize {
        fs::metadata(&self.serial).map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX))
    }

    /// Waits until the console, after byte `from`, has a line containing
    /// `marker`; returns that line and the offset just past it (a `from`
    /// for the next wait). Fails if qemu exits or time runs out.
    pub fn wait_for(
        &mut self,
        marker: &str,
        from: usize,
        timeout: Duration,
    ) -> Result<(String, usize)> {
        let deadline = Instant::now() + timeout;
        loop {
            let bytes = fs::read(&self.serial).unwrap_or_default();
            let start = from.min(bytes.len());
            let mut offset = start;
            for raw in bytes[start..].split_inclusive(|b| *b == b'\n') {
                offset += raw.len();
                // Only whole lines: the one being written may be cut.
                if !raw.ends_with(b"\n") {
                    break;
                }
                let line = String::from_utf8_lossy(raw);
                if line.contains(marker) {
                    return Ok((line.trim_end().to_owned(), offset));
                }
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("qemu exited ({status}) before {marker:?}").into());
            }
            if Instant::now() >= deadline {
                return Err(format!("no {marker:?} on the console within {timeout:?}").into());
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last `n` lines of the console, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let text = self.console();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- last console lines of {} ---\n{}",
                self.serial.display(),
                self.tail(60)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SSH key pair made for one test, and the ssh options that use it.
pub struct Ssh {
    pub key: PathBuf,
    pub public: String,
}

impl Ssh {
    pub fn new(dir: &Path) -> Result<Ssh> {
        let key = dir.join("id_ed25519");
        let k = key.to_str().ok_or("non-UTF-8 path")?;
        setup(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "lvs-image-test",
                "-f",
                k,
            ],
        )?;
        let public = fs::read_to_string(dir.join("id_ed25519.pub"))?;
        Ok(Ssh { key, public })
    }

    /// The ssh options (no config file, no host-key memory, key only).
    pub fn options(&self) -> Vec<String> {
        let mut o = vec!["-F".to_owned(), "/dev/null".to_owned(), "-i".to_owned()];
        o.push(self.key.display().to_string());
        for opt in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            "BatchMode=yes",
            "ConnectTimeout=10",
            "IdentitiesOnly=yes",
        ] {
            o.push("-o".to_owned());
            o.push(opt.to_owned());
        }
        o
    }

    /// Runs `command` on the guest from the client namespace.
    pub fn run(&self, net: &Net, command: &str) -> Result<Output> {
        let mut c = net.cmd("cl", "ssh");
        c.args(self.options())
            .arg(format!("root@{GUEST_EXT}"))
            .arg(command);
        Ok(run_bounded(c, Duration::from_secs(90))?)
    }

    /// [`Ssh::run`], failing on a non-zero exit; returns stdout.
    pub fn ok(&self, net: &Net, command: &str) -> Result<String> {
        let out = self.run(net, command)?;
        check(&format!("ssh {command}"), out)
    }

    /// Writes a wrapper named `ssh` into `dir` that adds this key's
    /// options, for programs that run plain `ssh` (lvsadm -H).
    pub fn wrapper(&self, dir: &Path) -> Result<PathBuf> {
        let bin = dir.join("sshbin");
        fs::create_dir_all(&bin)?;
        let opts: Vec<String> = self.options().iter().map(|o| format!("'{o}'")).collect();
        let script = format!("#!/bin/sh\nexec /usr/bin/ssh {} \"$@\"\n", opts.join(" "));
        let path = bin.join("ssh");
        fs::write(&path, script)?;
        setup("chmod", &["0755", path.to_str().ok_or("path")?])?;
        Ok(bin)
    }
}

/// Copies a raw disk image (sparse) into `dir`.
pub fn copy_disk(src: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let dest = dir.join(name);
    let (s, d) = (src.to_str().ok_or("path")?, dest.to_str().ok_or("path")?);
    setup("cp", &["--sparse=always", s, d])?;
    Ok(dest)
}

/// One bounded HTTP GET from the client namespace; the body.
pub fn curl(net: &Net, url: &str) -> Result<String> {
    let mut c = net.cmd("cl", "curl");
    c.args(["-sS", "--connect-timeout", "3", "--max-time", "10", url]);
    check(
        &format!("curl {url}"),
        run_bounded(c, Duration::from_secs(20))?,
    )
}

/// Runs a setup command, bounded; a failure is an error with its output.
pub fn setup(program: &str, args: &[&str]) -> Result<()> {
    let mut c = Command::new(program);
    c.args(args);
    check(
        &format!("{program} {}", args.join(" ")),
        run_bounded(c, SETUP_TIMEOUT)?,
    )
    .map(drop)
}

#[path = "../common/bounded.rs"]
mod bounded;
pub use bounded::{check, run_bounded};
