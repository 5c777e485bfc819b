//! The appliance image (image/, docs/image.md) under qemu with software
//! emulation: build it, boot it with UEFI and with BIOS, wait for lvsd on
//! the serial console, run lvsadm over SSH through a tap device inside a
//! namespace, send HTTP through the guest's VIP to a real server in a
//! namespace, survive a broken config, and update: a good version is
//! blessed (BIOS), a version whose lvsd cannot start falls back (UEFI).
//!
//! Needs root (namespaces, taps) and installs qemu and OVMF when missing
//! (image/build.sh --with-test-deps); skipped with a message otherwise.
//! The build is reused when its inputs did not change (target/image/test).
//! LVS_IMAGE_BINS=DIR takes static lvsd and lvsadm from DIR instead of
//! building them.

mod image_support;

use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use image_support::{
    build, check, check_qemu, copy_disk, curl, ready, repo, run_bounded, setup, workspace_bin,
    Firmware, Net, Result, Ssh, Vm, GUEST_EXT, MAC_EXT, MAC_INT, RS1, VIP,
};

/// Versions the tests build: the one flashed, a good update, a broken one.
const BASE: &str = "1.0.0";
const GOOD: &str = "1.0.1";
const BROKEN: &str = "1.0.2-broken";

/// From qemu's start to lvsd answering, under TCG (5-30 s seen; generous
/// for a loaded CI machine).
const BOOT: Duration = Duration::from_secs(300);
/// An update, its reboot and (for a broken one) the fallback reboot.
const UPDATE: Duration = Duration::from_secs(600);

struct Images {
    base_img: PathBuf,
    base_qcow2: PathBuf,
    good_img: PathBuf,
    broken_update: PathBuf,
}

/// Builds (or reuses) the three versions once per test binary.
fn images() -> Result<&'static Images> {
    static BUILT: Mutex<Option<std::result::Result<&'static Images, String>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.is_none() {
        let out = repo().join("target/image/test");
        let o = out.to_str().ok_or("non-UTF-8 path")?.to_owned();
        let limit = Duration::from_secs(900);
        let r = build(
            &["--flavour", "cloud", "--version", BASE, "--out", &o],
            limit,
        )
        .and_then(|()| {
            build(
                &[
                    "--flavour",
                    "cloud",
                    "--version",
                    GOOD,
                    "--out",
                    &o,
                    "--no-qcow2",
                ],
                limit,
            )
        })
        .and_then(|()| {
            build(
                &[
                    "--flavour",
                    "cloud",
                    "--version",
                    BROKEN,
                    "--variant",
                    "broken-lvsd",
                    "--bundle-only",
                    "--out",
                    &o,
                ],
                limit,
            )
        })
        .map(|()| {
            &*Box::leak(Box::new(Images {
                base_img: out.join(format!("lvs-cloud-{BASE}.img")),
                base_qcow2: out.join(format!("lvs-cloud-{BASE}.qcow2")),
                good_img: out.join(format!("lvs-cloud-{GOOD}.img")),
                broken_update: out.join(format!("lvs-cloud-{BROKEN}.update")),
            }))
        })
        .map_err(|e| e.to_string());
        *built = Some(r);
    }
    match built.as_ref() {
        Some(Ok(i)) => Ok(i),
        Some(Err(e)) => Err(format!("building the images failed earlier: {e}").into()),
        None => unreachable!(),
    }
}

/// The test's lvsd config: NAT from the VIP to the real server.
const LVSD_TOML: &str = r#"[daemon]
interfaces = ["ext0", "int0"]
admin_socket = "/run/lvsd/lvsd.sock"

[[service]]
protocol = "tcp"
address = "198.19.0.100:80"
scheduler = "rr"

  [[service.real_server]]
  address = "198.18.1.11:8080"
  method = "nat"
"#;

/// A copy of `img` with the test's configuration partition, and the
/// namespaces, the key and the real server around it.
fn prepare(name: &str, img: &std::path::Path) -> Result<(Net, Ssh, PathBuf)> {
    let mut net = Net::new(name)?;
    let ssh = Ssh::new(&net.dir)?;
    let disk = copy_disk(img, &net.dir, "disk.img")?;
    let network = format!(
        "hostname lvs-{name}\r\nlink ext0 {MAC_EXT}\r\nlink int0 {MAC_INT}\r\n\
         address ext0 {GUEST_EXT}/24\r\naddress int0 198.18.1.1/24\r\n"
    );
    let files = [
        ("network.conf", network),
        ("lvsd.toml", LVSD_TOML.to_owned()),
        ("authorized_keys", ssh.public.clone()),
    ];
    for (f, text) in &files {
        fs::write(net.dir.join(f), text)?;
    }
    let p = |f: &str| net.dir.join(f).display().to_string();
    setup(
        repo().join("image/configure.sh").to_str().ok_or("path")?,
        &[
            disk.to_str().ok_or("path")?,
            "--network",
            &p("network.conf"),
            "--lvsd",
            &p("lvsd.toml"),
            "--authorized-keys",
            &p("authorized_keys"),
        ],
    )?;
    let testsrv = workspace_bin("lvs-testsrv")?;
    net.spawn(
        "rs",
        &[
            testsrv.to_str().ok_or("path")?,
            "--name",
            "rs1",
            "--http",
            &format!("{RS1}:8080"),
        ],
        "rs1.log",
    )?;
    Ok((net, ssh, disk))
}

/// `n` HTTP requests through the VIP; each must reach the real server.
fn traffic(net: &Net, n: usize) -> Result<()> {
    for i in 0..n {
        let body = curl(net, &format!("http://{VIP}/{i}"))?;
        if body.trim() != "rs1" {
            return Err(format!("request {i} through the VIP answered {body:?}").into());
        }
    }
    Ok(())
}

/// Runs image/update.sh from the client namespace; its exit code.
fn update(net: &Net, ssh: &Ssh, file: &std::path::Path) -> Result<i32> {
    let mut c = net.cmd("cl", repo().join("image/update.sh").to_str().ok_or("path")?);
    c.arg("-i").arg(&ssh.key);
    for o in [
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        "IdentitiesOnly=yes",
    ] {
        c.args(["-o", o]);
    }
    c.args(["--wait", "500"])
        .arg(format!("root@{GUEST_EXT}"))
        .arg(file);
    let out = run_bounded(c, UPDATE)?;
    eprintln!(
        "image/update.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status
        .code()
        .ok_or_else(|| format!("update.sh was killed: {}", out.status).into())
}

/// The image tests run one at a time: two emulated machines on a 2-core
/// host starve each other's boots.
static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn skip_or_build() -> Option<&'static Images> {
    if !ready() {
        return None;
    }
    let started = Instant::now();
    let images = images().unwrap_or_else(|e| panic!("{e}"));
    check_qemu().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("images ready after {:.0?}", started.elapsed());
    Some(images)
}

/// UEFI (OVMF, systemd-boot, the unified kernel image): boot, lvsadm over
/// SSH and with -H, traffic, a broken config kept out, and an update whose
/// lvsd cannot start, which falls back to the version before.
#[test]
fn uefi_boot_ssh_traffic_bad_config_and_rollback() {
    let _one = ONE_VM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(images) = skip_or_build() else {
        return;
    };
    let (net, ssh, disk) = prepare("uefi", &images.base_img).expect("preparing the guest");
    let mut vm = Vm::boot(&net, &disk, Firmware::Uefi, "uefi").expect("starting qemu");

    let (line, at) = vm.wait_for("LVSD-READY", 0, BOOT).expect("lvsd up");
    eprintln!(
        "UEFI boot: lvsd answered after {:.1?}: {line}",
        vm.started.elapsed()
    );
    assert!(line.contains(&format!("lvsd {BASE} running")), "{line}");

    // lvsadm over SSH, and lvsadm -H from the operator's side.
    let list = ssh.ok(&net, "lvsadm -L -n").expect("lvsadm over ssh");
    assert!(list.contains("TCP  198.19.0.100:80 rr"), "{list}");
    assert!(list.contains("-> 198.18.1.11:8080"), "{list}");
    let wrapper = ssh.wrapper(&net.dir).expect("ssh wrapper");
    let lvsadm = workspace_bin("lvsadm").expect("lvsadm");
    let mut c = net.cmd("cl", "env");
    c.arg(format!(
        "PATH={}:{}",
        wrapper.display(),
        std::env::var("PATH").unwrap_or_default()
    ))
    .arg(&lvsadm)
    .args(["-H", &format!("root@{GUEST_EXT}"), "-L", "-n"]);
    let remote = check(
        "lvsadm -H",
        run_bounded(c, Duration::from_secs(60)).expect("lvsadm -H"),
    )
    .expect("lvsadm -H");
    assert_eq!(
        remote, list,
        "lvsadm -H shows what lvsadm on the appliance shows"
    );

    // Real traffic through the guest's VIP.
    let t = Instant::now();
    traffic(&net, 20).expect("HTTP through the VIP");
    eprintln!("20 requests through the VIP in {:.1?}", t.elapsed());
    let stats = ssh.ok(&net, "lvsadm -L -n --stats").expect("stats");
    assert!(
        stats.lines().any(|l| l.starts_with("TCP  198.19.0.100:80")
            && l.split_whitespace()
                .nth(2)
                .and_then(|c| c.parse::<u64>().ok())
                >= Some(20)),
        "at least 20 connections counted:\n{stats}"
    );
    // The guest's lvsd runs the XDP backend on virtio-net, and the frames
    // went through its AF_XDP sockets.
    let status = ssh.ok(&net, "lvsadm --status").expect("status");
    eprintln!("guest lvsadm --status:\n{status}");
    let backend = status.lines().next().unwrap_or("");
    assert!(backend.starts_with("backend: xdp"), "{status}");
    let xdp_frames = status
        .lines()
        .find(|l| l.starts_with("rx_xdp_frames"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(xdp_frames >= Some(20 * 3), "{status}");

    // A broken config: reported, and lvsd keeps the rules it has.
    ssh.ok(
        &net,
        "printf '[daemon]\\ninterfaces = [\"ext0\"]\\nscheduler_typo = 1\\n' >/config/lvsd.toml && lvs-reload",
    )
    .expect("writing a broken config");
    let (line, _) = vm
        .wait_for("/config/lvsd.toml is broken", at, Duration::from_secs(60))
        .expect("the broken config reported on the console");
    eprintln!("console: {line}");
    let list = ssh.ok(&net, "lvsadm -L -n").expect("lvsadm");
    assert!(list.contains("-> 198.18.1.11:8080"), "rules kept:\n{list}");
    traffic(&net, 3).expect("traffic with the old rules");

    // An update whose lvsd cannot start: installed, tried, set aside; the
    // previous version comes back (with the last good config, since the
    // file on the partition is still broken).
    let from = vm.mark();
    let t = Instant::now();
    let code = update(&net, &ssh, &images.broken_update).expect("update.sh");
    assert_eq!(code, 3, "update.sh reports the fallback (exit 3)");
    let (line, at) = vm
        .wait_for("LVS-ROLLBACK", from, UPDATE)
        .expect("the rollback on the console");
    eprintln!("rollback after {:.1?}: {line}", t.elapsed());
    assert!(line.contains(BROKEN) && line.contains(BASE), "{line}");
    vm.wait_for("lvsd starts with the last good config", at, BOOT)
        .expect("the last good config used at boot");
    let (line, _) = vm.wait_for("LVSD-READY", at, BOOT).expect("lvsd back");
    assert!(line.contains(&format!("lvsd {BASE} running")), "{line}");
    let versions = ssh.ok(&net, "lvs-boot list").expect("lvs-boot list");
    assert!(
        versions.contains(&format!("{BASE} good, running")),
        "{versions}"
    );
    assert!(versions.contains(&format!("{BROKEN} bad")), "{versions}");
    traffic(&net, 5).expect("traffic after the rollback");
}

/// BIOS (SeaBIOS, gptmbr.bin, syslinux): boot, lvsadm over SSH, traffic,
/// lvsd killed and restarted, and an update to a good version taken from a
/// raw image, which is blessed and becomes syslinux's default.
#[test]
fn bios_boot_ssh_traffic_and_update() {
    let _one = ONE_VM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(images) = skip_or_build() else {
        return;
    };
    // The qcow2 is the same disk.
    let info = |p: &PathBuf, fmt: &str| -> String {
        let mut c = std::process::Command::new("qemu-img");
        c.args(["info", "-f", fmt, "--output=json"]).arg(p);
        check(
            "qemu-img info",
            run_bounded(c, Duration::from_secs(60)).expect("qemu-img"),
        )
        .expect("qemu-img info")
    };
    let size = |json: &str| -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        v["virtual-size"].as_u64().map(|s| s.to_string())
    };
    assert_eq!(
        size(&info(&images.base_qcow2, "qcow2")),
        size(&info(&images.base_img, "raw")),
        "the qcow2 has the raw image's size"
    );

    let (net, ssh, disk) = prepare("bios", &images.base_img).expect("preparing the guest");
    let mut vm = Vm::boot(&net, &disk, Firmware::Bios, "bios").expect("starting qemu");
    let (line, _) = vm.wait_for("LVSD-READY", 0, BOOT).expect("lvsd up");
    eprintln!(
        "BIOS boot: lvsd answered after {:.1?}: {line}",
        vm.started.elapsed()
    );
    assert!(vm.console().contains("booting (bios)"));

    let list = ssh.ok(&net, "lvsadm -L -n").expect("lvsadm over ssh");
    assert!(list.contains("-> 198.18.1.11:8080"), "{list}");
    traffic(&net, 10).expect("HTTP through the VIP");

    // lvsd dies: reported, restarted, serving again.
    let from = vm.mark();
    ssh.ok(&net, "kill -9 $(cat /run/lvs/lvsd.pid)")
        .expect("killing lvsd");
    let (line, at) = vm
        .wait_for("LVSD-EXITED", from, Duration::from_secs(60))
        .expect("lvsd's death on the console");
    eprintln!("console: {line}");
    vm.wait_for("LVSD-READY", at, Duration::from_secs(120))
        .expect("lvsd restarted");
    traffic(&net, 3).expect("HTTP after the restart");

    let from = vm.mark();
    let t = Instant::now();
    let code = update(&net, &ssh, &images.good_img).expect("update.sh");
    assert_eq!(code, 0, "update.sh reports success");
    let (line, _) = vm
        .wait_for("LVS-BLESSED", from, UPDATE)
        .expect("the new version blessed");
    eprintln!("update to {GOOD} blessed after {:.1?}: {line}", t.elapsed());
    assert!(line.contains(GOOD), "{line}");
    let versions = ssh.ok(&net, "lvs-boot list").expect("lvs-boot list");
    assert!(
        versions.contains(&format!("{GOOD} good, running, BIOS default")),
        "{versions}"
    );
    assert!(versions.contains(&format!("{BASE} good")), "{versions}");
    traffic(&net, 5).expect("traffic after the update");
}
