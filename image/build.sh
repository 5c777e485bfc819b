#!/usr/bin/env bash
# image/build.sh: builds the lvsd appliance: a raw GPT disk image (and a
# qcow2 of it) that boots with UEFI and with BIOS, and an update bundle for
# image/update.sh. See docs/image.md.
#
#   image/build.sh [--flavour cloud|metal|all] [--version V] [--out DIR]
#                  [--bins DIR] [--bundle-only] [--no-qcow2] [--force]
#                  [--no-install] [--with-test-deps] [--variant broken-lvsd]
#
# --flavour   cloud: Debian's linux-image-cloud-amd64 (VMs); metal:
#             linux-image-amd64 (bare metal). Default: all (both).
# --version   the image version (default: the workspace's version).
# --bins      take lvsd and lvsadm from DIR instead of building them.
# --variant broken-lvsd  (for tests) an image whose lvsd always fails to
#             start, to exercise the rollback.
# --force     rebuild even if the inputs did not change.
# --no-install  do not install missing Debian packages.
# --with-test-deps  also install what the boot tests need (qemu, OVMF).
#
# Outputs, in --out (default target/image/out):
#   lvs-FLAVOUR-VERSION.img     raw disk image: dd it to a disk
#   lvs-FLAVOUR-VERSION.qcow2   the same for VMs
#   lvs-FLAVOUR-VERSION.update  update bundle for image/update.sh
#   lvs-FLAVOUR.{img,qcow2,update}  links to the latest build
#
# Nothing here needs root beyond installing packages: partitions are built
# as files (mtools, mkfs.fat, mke2fs -d, sfdisk) and joined with dd.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=image/lib.sh
. "$here/lib.sh"

flavours=(cloud metal)
version=""
out=""
bins=""
bundle_only=0
qcow2=1
force=0
install=1
test_deps=0
variant=""

while (($#)); do
    case $1 in
    --flavour)
        case ${2:-} in
        all) flavours=(cloud metal) ;;
        cloud | metal) flavours=("$2") ;;
        *) die "--flavour takes cloud, metal or all" ;;
        esac
        shift
        ;;
    --version)
        version=${2:-}
        shift
        ;;
    --out)
        out=${2:-}
        shift
        ;;
    --bins)
        bins=${2:-}
        shift
        ;;
    --bundle-only) bundle_only=1 ;;
    --no-qcow2) qcow2=0 ;;
    --force) force=1 ;;
    --no-install) install=0 ;;
    --with-test-deps) test_deps=1 ;;
    --variant)
        variant=${2:-}
        [[ $variant == broken-lvsd ]] || die "--variant: only broken-lvsd is known"
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//p}' "$0"
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

# --- Debian packages ---------------------------------------------------------

host_packages=(busybox-static kmod dosfstools mtools fdisk e2fsprogs cpio zstd binutils
    systemd-boot-efi syslinux syslinux-common extlinux dropbear-bin libtomcrypt1 libtommath1
    nftables)
if ((install)); then
    ensure_packages "${host_packages[@]}"
    # qemu-img for the qcow2 (qemu-utils); see ensure_qemu in lib.sh.
    ((qcow2)) && ensure_qemu_img
    # What tests/image.rs boots the image with (qemu, OVMF, ssh, curl).
    ((test_deps)) && ensure_test_packages
fi

# --- lvsd and lvsadm, static ------------------------------------------------

target_root=$repo/target/image
out=${out:-$target_root/out}
cache=$target_root/cache
work=$target_root/work
mkdir -p "$out" "$cache" "$work"
# One build at a time in this tree (tests may start several).
exec 9>"$target_root/.build.lock"
flock 9

if [[ -z $bins ]]; then
    log "building static lvsd and lvsadm (cargo, target/image)"
    (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=$target_root \
        cargo build --release --target x86_64-unknown-linux-gnu -p lvsd -p lvsadm)
    bins=$target_root/x86_64-unknown-linux-gnu/release
fi
for b in lvsd lvsadm; do
    [[ -x $bins/$b ]] || die "no $b in $bins"
    # A static binary is what the initramfs can run without a loader.
    file_out=$(file -b "$bins/$b" 2>/dev/null || true)
    [[ $file_out != *dynamically* ]] || die "$bins/$b is dynamically linked"
done
if [[ -z $version ]]; then
    version=$("$bins/lvsd" --version | awk '{print $2}')
fi
[[ $version =~ ^[0-9][0-9A-Za-z._~-]*$ ]] || die "bad version '$version' (digits, letters, . _ ~ -; no +)"

# --- inputs fingerprint --------------------------------------------------------

# Everything that goes into an image; an unchanged fingerprint means the
# image on disk is still right.
fingerprint() {
    local flavour=$1 kdeb=$2
    {
        echo "flavour=$flavour version=$version variant=$variant kernel=$(basename "$kdeb")"
        sha256sum "$bins/lvsd" "$bins/lvsadm" | awk '{print $1}'
        (cd "$here" && find rootfs config build.sh lib.sh -type f -print0 | sort -z | xargs -0 sha256sum)
        dpkg-query -W -f='${Package} ${Version}\n' busybox-static dropbear-bin nftables \
            systemd-boot-efi syslinux syslinux-common extlinux libc6 2>/dev/null
    } | sha256sum | awk '{print $1}'
}

# --- kernel ---------------------------------------------------------------------

# Downloads (once) and unpacks the kernel package of a flavour; prints the
# unpacked directory.
kernel_of() {
    local meta pkg deb dir
    case $1 in
    cloud) meta=linux-image-cloud-amd64 ;;
    metal) meta=linux-image-amd64 ;;
    esac
    pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [[ -z $pkg ]] && ((install)); then
        apt_update_once
        pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
    if [[ -z $pkg ]]; then
        # Offline: use what was fetched before.
        deb=$(ls -t "$cache"/linux-image-*-"${meta#linux-image-}"_*.deb 2>/dev/null | head -n 1 || true)
        [[ -n $deb ]] || die "cannot resolve $meta (apt lists missing?) and nothing cached"
    else
        deb=$(ls "$cache/${pkg}"_*.deb 2>/dev/null | head -n 1 || true)
        local want
        want=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
        if [[ -z $deb || $deb != *"_${want//:/%3a}_"* ]]; then
            log "downloading $pkg $want"
            if ! (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2); then
                # Old package lists name a version the mirror dropped.
                ((install)) || die "apt-get download $pkg failed"
                apt_update_once
                pkg=$(apt-cache depends "$meta" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
                (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
                    die "apt-get download $pkg failed"
            fi
            deb=$(ls -t "$cache/${pkg}"_*.deb | head -n 1)
        fi
    fi
    dir=$cache/$(basename "$deb" .deb)
    if [[ ! -f $dir/.unpacked ]]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$deb" "$dir"
        # The package ships no modules.dep: make it, for the closure below.
        depmod -b "$dir" "$(ls "$dir/lib/modules")"
        touch "$dir/.unpacked"
    fi
    echo "$dir"
}

# --- the initramfs (the whole OS) ----------------------------------------------

# Module directories (under lib/modules/KVER/kernel) the appliance carries;
# their dependencies come along. Network and storage drivers, filesystems,
# nftables, and what they need.
module_dirs=(
    drivers/net/ethernet drivers/net/phy drivers/net/mdio drivers/net/pcs drivers/net/bonding
    drivers/net/hyperv drivers/net/vmxnet3 drivers/net/virtio_net.ko drivers/net/net_failover.ko
    drivers/net/xen-netfront.ko drivers/net/tun.ko drivers/net/veth.ko drivers/net/macvlan.ko
    drivers/net/dummy.ko drivers/net/mii.ko drivers/net/vxlan drivers/net/geneve.ko drivers/net/ipvlan
    drivers/ata drivers/nvme drivers/scsi/sd_mod.ko drivers/scsi/virtio_scsi.ko drivers/scsi/sr_mod.ko
    drivers/scsi/hv_storvsc.ko drivers/scsi/vmw_pvscsi.ko drivers/scsi/megaraid drivers/scsi/mpt3sas
    drivers/scsi/smartpqi drivers/scsi/hpsa.ko drivers/scsi/aacraid drivers/message
    drivers/block drivers/virtio drivers/usb/host drivers/usb/storage drivers/usb/core
    drivers/hid/usbhid drivers/hid/hid-generic.ko drivers/input/keyboard/atkbd.ko drivers/input/serio
    drivers/hv drivers/xen drivers/ptp drivers/pps drivers/dca drivers/char/hw_random drivers/watchdog
    drivers/mmc drivers/md/dm-mod.ko
    fs/fat fs/nls fs/efivarfs fs/ext4 fs/jbd2 fs/mbcache.ko
    net/netfilter net/ipv4/netfilter net/ipv6/netfilter net/bridge net/8021q net/packet net/ipv4/ipip.ko
    net/ipv4/ip_tunnel.ko net/ipv4/tunnel4.ko net/ipv6/ipv6.ko
    lib crypto arch/x86/crypto
)

# Copies the chosen modules (and their dependencies) of kernel tree $1 into
# root $2, then runs depmod.
install_modules() {
    local ktree=$1 root=$2 kver src
    kver=$(ls "$ktree/lib/modules")
    src=$ktree/lib/modules/$kver
    mkdir -p "$root/lib/modules/$kver"
    (
        cd "$src"
        for d in "${module_dirs[@]}"; do
            [[ -e kernel/$d ]] && find "kernel/$d" -name '*.ko*'
        done
    ) | sort -u >"$work/modules.seed"
    # The closure over modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko").
    awk -v seeds="$work/modules.seed" '
        FILENAME == seeds { want[$1] = 1; next }
        { sub(":", "", $1); deps[$1] = ""; for (i = 2; i <= NF; i++) deps[$1] = deps[$1] " " $i }
        END {
            changed = 1
            while (changed) {
                changed = 0
                for (m in want) {
                    n = split(deps[m], d, " ")
                    for (i = 1; i <= n; i++) if (!(d[i] in want)) { want[d[i]] = 1; changed = 1 }
                }
            }
            for (m in want) print m
        }' "$work/modules.seed" "$src/modules.dep" | sort >"$work/modules.list"
    (cd "$src" && cpio -pdm --quiet "$root/lib/modules/$kver" <"$work/modules.list")
    cp "$src"/modules.order "$src"/modules.builtin "$src"/modules.builtin.modinfo "$root/lib/modules/$kver/"
    depmod -b "$root" "$kver"
    echo "$kver"
}

# Copies a dynamically linked program and the libraries it needs (with the
# loader) into the root.
install_dynamic() {
    local root=$1 prog=$2 dest=${3:-$2} lib
    mkdir -p "$root$(dirname "$dest")"
    cp -L "$prog" "$root$dest"
    # ldd exits 1 for a static binary; its output is all that matters.
    for lib in $(ldd "$prog" 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}' || true); do
        [[ -e $root$lib ]] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

# A newc cpio entry for a character device (the archive is built without
# root, so /dev/console cannot be a real node; the kernel needs it to give
# init a console before devtmpfs is mounted).
cpio_chardev() {
    local name=$1 major=$2 minor=$3 namesize
    namesize=$((${#name} + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        1 $((0020600)) 0 0 1 0 0 0 0 "$major" "$minor" "$namesize" 0
    printf '%s\0' "$name"
    # The header (110 bytes) plus the name is padded to a multiple of 4.
    local pad=$(((4 - (110 + namesize) % 4) % 4))
    head -c "$pad" /dev/zero
}

build_initramfs() {
    local flavour=$1 ktree=$2 dest=$3 root kver
    root=$work/$flavour/root
    rm -rf "$root"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/lib,etc,proc,sys,dev,run,tmp,root,var/log,config,state,boot,lib64}
    chmod 0700 "$root/root"
    chmod 1777 "$root/tmp"

    # busybox and its applets (init, sh, mount, ip, udhcpc, modprobe, ...).
    cp /bin/busybox "$root/bin/busybox"
    local applet
    for applet in $(/bin/busybox --list-full); do
        [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
    done
    ln -sf /bin/busybox "$root/init"

    # The appliance's own files.
    cp -a "$here/rootfs/." "$root/"
    for c in lvs-boot lvs-reload lvs-status; do
        ln -sf "/lib/lvs/$c" "$root/usr/bin/$c"
    done
    {
        echo "NAME=lvs"
        echo "VERSION=$version"
        echo "FLAVOUR=$flavour"
        echo "VARIANT=${variant:-release}"
        echo "KERNEL=$(basename "$ktree")"
        echo "BUILT=$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    } >"$root/etc/lvs-release"

    # lvsd and lvsadm (static), without their debug info.
    strip -o "$root/usr/bin/lvsadm" "$bins/lvsadm"
    if [[ $variant == broken-lvsd ]]; then
        # Accepts every config (so the config check passes) but never starts.
        cat >"$root/usr/bin/lvsd" <<'EOF'
#!/bin/sh
for a in "$@"; do [ "$a" = --check ] && exec /usr/lib/lvsd-real "$@"; done
[ "$1" = --version ] && exec /usr/lib/lvsd-real --version
echo "lvsd: this image was built with --variant broken-lvsd: lvsd does not start" >&2
exit 1
EOF
        chmod 0755 "$root/usr/bin/lvsd"
        strip -o "$root/usr/lib/lvsd-real" "$bins/lvsd"
    else
        strip -o "$root/usr/bin/lvsd" "$bins/lvsd"
    fi

    # nft (lvsd runs it), dropbear, extlinux (the BIOS once slot), with their
    # libraries and the loader.
    install_dynamic "$root" /usr/sbin/nft
    install_dynamic "$root" /usr/sbin/dropbear
    install_dynamic "$root" /usr/bin/dropbearkey
    install_dynamic "$root" /usr/bin/extlinux
    ln -sf /usr/bin/dropbearkey "$root/usr/sbin/dropbearkey"

    kver=$(install_modules "$ktree" "$root")
    log "$flavour: kernel $kver, $(wc -l <"$work/modules.list") modules"

    # One archive of the tree, then a second one holding /dev/console (the
    # kernel reads concatenated archives).
    (
        cd "$root"
        find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0
        cpio_chardev dev/console 5 1
        # The trailer of the second archive.
        printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
            0 0 0 0 1 0 0 0 0 0 0 11 0
        printf 'TRAILER!!!\0'
        head -c $(((4 - (110 + 11) % 4) % 4)) /dev/zero
    ) | zstd -q -T0 -12 >"$dest"
}

# --- the unified kernel image ------------------------------------------------------

# Joins the EFI stub, os-release, the command line, the kernel and the
# initramfs into one PE file (what ukify does), section by section, each
# placed after the one before.
build_uki() {
    local kernel=$1 initrd=$2 cmdline=$3 osrel=$4 dest=$5
    local stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
    [[ -f $stub ]] || die "no $stub (package systemd-boot-efi)"
    local end align=$((0x10000))
    # The end of the stub's last section.
    local size vma0
    end=0
    while read -r size vma0; do
        ((0x$vma0 + 0x$size > end)) && end=$((0x$vma0 + 0x$size))
    done < <(objdump -h "$stub" | awk '$1 ~ /^[0-9]+$/ {print $3, $4}')
    local args=() name file vma
    for pair in ".osrel:$osrel" ".cmdline:$cmdline" ".linux:$kernel" ".initrd:$initrd"; do
        name=${pair%%:*}
        file=${pair#*:}
        vma=$(((end + align - 1) / align * align))
        args+=(--add-section "$name=$file" --change-section-vma "$name=$(printf '0x%x' "$vma")")
        end=$((vma + $(stat -c %s "$file")))
    done
    objcopy "${args[@]}" "$stub" "$dest"
}

# --- the disk ---------------------------------------------------------------------

build_disk() {
    local flavour=$1 kernel=$2 initrd=$3 uki=$4 cmdline_file=$5 dest=$6
    local d=$work/$flavour/disk
    rm -rf "$d"
    mkdir -p "$d"

    local esp_mib cfg_mib=32 state_mib=64
    case $flavour in
    cloud) esp_mib=256 ;;
    metal) esp_mib=512 ;;
    esac
    # Two versions must fit (the running one and an update), with room.
    local need_kib
    need_kib=$(du -ck "$kernel" "$initrd" "$uki" | tail -n 1 | awk '{print $1}')
    ((need_kib * 2 + 4096 < esp_mib * 1024)) || die "$flavour: the EFI partition ($esp_mib MiB) cannot hold two versions of $need_kib KiB"

    local esp_start=2048
    local esp_size=$((esp_mib * 2048))
    local cfg_start=$((esp_start + esp_size)) cfg_size=$((cfg_mib * 2048))
    local state_start=$((cfg_start + cfg_size)) state_size=$((state_mib * 2048))
    local total=$((state_start + state_size + 2048))

    # EFI system partition: systemd-boot, the UKI, syslinux with the same
    # kernel and initramfs for BIOS machines.
    mkfs.fat -F 32 -n LVS-EFI -i 4c565331 -h "$esp_start" -C "$d/esp.img" $((esp_size / 2)) >/dev/null
    export MTOOLS_SKIP_CHECK=1
    local e="$d/esp.img"
    mmd -i "$e" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/EFI/Linux ::/loader ::/syslinux ::/lvs "::/lvs/$version"
    mcopy -i "$e" /usr/lib/systemd/boot/efi/systemd-bootx64.efi ::/EFI/BOOT/BOOTX64.EFI
    mcopy -i "$e" /usr/lib/systemd/boot/efi/systemd-bootx64.efi ::/EFI/systemd/systemd-bootx64.efi
    printf 'timeout 2\nconsole-mode keep\neditor yes\nauto-entries no\nauto-firmware no\n' >"$d/loader.conf"
    mcopy -i "$e" "$d/loader.conf" ::/loader/loader.conf
    mcopy -i "$e" "$uki" "::/EFI/Linux/lvs-$version.efi"
    mcopy -i "$e" "$kernel" "::/lvs/$version/vmlinuz"
    mcopy -i "$e" "$initrd" "::/lvs/$version/initrd.img"
    mcopy -i "$e" "$cmdline_file" "::/lvs/$version/cmdline"
    echo "$flavour" >"$d/flavour"
    mcopy -i "$e" "$d/flavour" "::/lvs/$version/flavour"
    syslinux_cfg "$version" "$(cat "$cmdline_file")" >"$d/syslinux.cfg"
    mcopy -i "$e" "$d/syslinux.cfg" ::/syslinux/syslinux.cfg
    syslinux --directory /syslinux --install "$e"

    # Configuration partition: what the user edits.
    mkfs.fat -F 16 -n LVS-CONFIG -i 4c565332 -h "$cfg_start" -C "$d/config.img" $((cfg_size / 2)) >/dev/null
    mcopy -i "$d/config.img" "$here"/config/* ::/

    # State partition (ext4), empty.
    mkdir -p "$d/state"
    truncate -s "$((state_size * 512))" "$d/state.img"
    mke2fs -q -t ext4 -L lvs-state -d "$d/state" "$d/state.img" "$((state_size / 2))k"

    # The disk: GPT, partitions, syslinux's MBR code for BIOS.
    rm -f "$dest.tmp"
    truncate -s $((total * 512)) "$dest.tmp"
    sfdisk --quiet --no-reread --no-tell-kernel "$dest.tmp" <<EOF
label: gpt
unit: sectors
first-lba: 2048
start=$esp_start, size=$esp_size, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="LVS-EFI", attrs="LegacyBIOSBootable"
start=$cfg_start, size=$cfg_size, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="LVS-CONFIG"
start=$state_start, size=$state_size, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="lvs-state"
EOF
    dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$dest.tmp" bs=440 count=1 conv=notrunc status=none
    dd if="$d/esp.img" of="$dest.tmp" bs=1M seek=$((esp_start / 2048)) conv=notrunc,sparse status=none
    dd if="$d/config.img" of="$dest.tmp" bs=1M seek=$((cfg_start / 2048)) conv=notrunc,sparse status=none
    dd if="$d/state.img" of="$dest.tmp" bs=1M seek=$((state_start / 2048)) conv=notrunc,sparse status=none
    mv "$dest.tmp" "$dest"
    rm -rf "$d"
}

# --- the update bundle ------------------------------------------------------------

build_bundle() {
    local flavour=$1 kernel=$2 initrd=$3 uki=$4 cmdline_file=$5 dest=$6
    local d=$work/$flavour/bundle
    rm -rf "$d"
    mkdir -p "$d/lvs-update"
    echo "$version" >"$d/lvs-update/VERSION"
    echo "$flavour" >"$d/lvs-update/FLAVOUR"
    cp "$kernel" "$d/lvs-update/vmlinuz"
    cp "$initrd" "$d/lvs-update/initrd.img"
    cp "$uki" "$d/lvs-update/lvs.efi"
    cp "$cmdline_file" "$d/lvs-update/cmdline"
    (cd "$d/lvs-update" && sha256sum VERSION FLAVOUR vmlinuz initrd.img lvs.efi cmdline >SHA256SUMS)
    tar -C "$d" -cf "$dest.tmp" --owner=0 --group=0 lvs-update
    mv "$dest.tmp" "$dest"
    rm -rf "$d"
}

# --- per flavour --------------------------------------------------------------------

for flavour in "${flavours[@]}"; do
    started=$(date +%s)
    name=lvs-$flavour-$version
    ktree=$(kernel_of "$flavour")
    fp=$(fingerprint "$flavour" "$ktree")
    stamp=$out/$name.stamp
    want=("$out/$name.update")
    ((bundle_only)) || want+=("$out/$name.img")
    ((bundle_only || !qcow2)) || want+=("$out/$name.qcow2")
    uptodate=1
    for f in "${want[@]}"; do [[ -f $f ]] || uptodate=0; done
    if ((!force && uptodate)) && [[ -f $stamp && $(cat "$stamp") == "$fp" ]]; then
        log "$name: up to date (inputs unchanged)"
        continue
    fi
    rm -f "$stamp"
    mkdir -p "$work/$flavour"

    kernel=$(ls "$ktree"/boot/vmlinuz-*)
    initrd=$work/$flavour/initrd.img
    log "$name: initramfs"
    build_initramfs "$flavour" "$ktree" "$initrd"

    cmdline_file=$work/$flavour/cmdline
    # console=: the screen and the first serial port (the last one named is
    # /dev/console); panic=10: a crash reboots, which moves a failing trial
    # version towards its fallback.
    echo "console=tty0 console=ttyS0,115200n8 panic=10 loglevel=4 printk.devkmsg=on" >"$cmdline_file"
    osrel=$work/$flavour/os-release
    {
        echo "NAME=\"lvs appliance\""
        echo "ID=lvs"
        echo "IMAGE_ID=lvs-$flavour"
        echo "IMAGE_VERSION=$version"
        echo "VERSION_ID=$version"
        echo "PRETTY_NAME=\"lvs $version ($flavour)\""
    } >"$osrel"
    uki=$work/$flavour/lvs.efi
    log "$name: unified kernel image"
    build_uki "$kernel" "$initrd" "$cmdline_file" "$osrel" "$uki"

    build_bundle "$flavour" "$kernel" "$initrd" "$uki" "$cmdline_file" "$out/$name.update"
    if ((!bundle_only)); then
        log "$name: disk image"
        build_disk "$flavour" "$kernel" "$initrd" "$uki" "$cmdline_file" "$out/$name.img"
        if ((qcow2)); then
            qemu-img convert -f raw -O qcow2 "$out/$name.img" "$out/$name.qcow2.tmp"
            mv "$out/$name.qcow2.tmp" "$out/$name.qcow2"
        fi
    fi
    # The "latest" links name release builds only.
    if [[ -z $variant ]]; then
        for f in "${want[@]}"; do
            ln -sfn "$(basename "$f")" "$out/lvs-$flavour.${f##*.}"
        done
    fi
    echo "$fp" >"$stamp"
    log "$name: done in $(($(date +%s) - started)) s: $(cd "$out" && ls "$name".* | grep -v stamp | tr '\n' ' ')"
done
