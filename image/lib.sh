# Shared by image/*.sh on the build host (bash). Sourced, never run.

log() { echo "image: $*" >&2; }
die() {
    echo "image: error: $*" >&2
    exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

_apt_updated=0
apt_update_once() {
    ((_apt_updated)) && return 0
    _apt_updated=1
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || log "apt-get update failed; trying with the lists there are"
}

pkg_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

# Installs the Debian packages that are missing (none: no apt at all).
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]}, and no apt-get"
    is_root || die "missing packages ${missing[*]}: install them (as root: apt-get install ${missing[*]})"
    apt_update_once
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
        {
            # A packages list older than the mirror: refresh once, try again.
            _apt_updated=0
            apt_update_once
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
        } || die "could not install ${missing[*]}"
}

# qemu-img (package qemu-utils) for the qcow2. A newer qemu-utils than the
# release's qemu-system (e.g. from backports) conflicts with it; installing
# qemu-system-x86 then removes qemu-utils, and this brings back the matching
# version.
ensure_qemu_img() {
    command -v qemu-img >/dev/null && return 0
    local v
    v=$(dpkg-query -W -f='${Version}' qemu-system-common 2>/dev/null || true)
    if pkg_installed qemu-system-common && [[ -n $v ]]; then
        is_root || die "qemu-img is missing: apt-get install qemu-utils=$v"
        apt_update_once
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --allow-downgrades \
            "qemu-utils=$v" >&2 || die "could not install qemu-utils=$v"
    else
        ensure_packages qemu-utils
    fi
}

# What the boot tests need: qemu, the UEFI firmware, SeaBIOS (a dependency),
# and the SSH client.
ensure_test_packages() {
    ensure_packages qemu-system-x86 ovmf openssh-client curl iproute2
    ensure_qemu_img
}

# syslinux.cfg for one version $1 booted with command line $2;
# lvs-boot on the appliance writes the same format for several.
syslinux_cfg() {
    local default=$1 cmdline=$2
    cat <<EOF
# Written by lvs-boot: DEFAULT is the good version; a new version
# is tried once (syslinux's once slot) before it becomes DEFAULT.
# At the boot: prompt, Tab lists the versions; type one to boot it.
SERIAL 0 115200
PROMPT 1
TIMEOUT 20
DEFAULT lvs-$default
LABEL lvs-$default
  LINUX /lvs/$default/vmlinuz
  INITRD /lvs/$default/initrd.img
  APPEND $cmdline
EOF
}

# The start and size (in 512-byte sectors) of the partition named $2 (GPT
# name) in disk image $1, as "START SIZE".
partition_of() {
    local img=$1 name=$2 line
    line=$(sfdisk -d "$img" 2>/dev/null | grep "name=\"$name\"") || die "$img has no partition named $name"
    local start size
    start=$(sed -n 's/.*start= *\([0-9]*\).*/\1/p' <<<"$line")
    size=$(sed -n 's/.*size= *\([0-9]*\).*/\1/p' <<<"$line")
    echo "$start $size"
}
