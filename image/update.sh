#!/usr/bin/env bash
# image/update.sh: installs a new appliance version over SSH, reboots into
# it, and waits to see it come up. A version that cannot start lvsd marks
# itself bad and the appliance falls back to the version it ran before (see
# lvs-boot on the appliance, and docs/image.md).
#
#   image/update.sh [options] root@HOST FILE
#
# FILE: an update bundle (lvs-FLAVOUR-VERSION.update from image/build.sh) or
# a raw disk image (lvs-FLAVOUR-VERSION.img): the new version is taken from
# its EFI partition.
#
# Options:
#   -i KEY          SSH identity file
#   -o OPTION       an ssh -o option (repeatable)
#   -p PORT         SSH port
#   --tries N       boots the new version gets before the fallback (default 3)
#   --force         install even a version that is not newer, or another
#                   kernel flavour
#   --no-reboot     install only; it starts at the next reboot
#   --wait SECONDS  how long to wait for the outcome (default 600; 0: no wait)
#
# Exit status: 0 the new version runs and is blessed; 1 an error; 3 the new
# version failed and the appliance runs the previous one.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=image/lib.sh
. "$here/lib.sh"

ssh_opts=(-o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3)
tries=""
force=""
reboot=1
wait_s=600
args=()
while (($#)); do
    case $1 in
    -i)
        ssh_opts+=(-i "$2")
        shift
        ;;
    -o)
        ssh_opts+=(-o "$2")
        shift
        ;;
    -p)
        ssh_opts+=(-p "$2")
        shift
        ;;
    --tries)
        tries=$2
        shift
        ;;
    --force) force=--force ;;
    --no-reboot) reboot=0 ;;
    --wait)
        wait_s=$2
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//p}' "$0"
        exit 0
        ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) args+=("$1") ;;
    esac
    shift
done
((${#args[@]} == 2)) || die "usage: image/update.sh [options] root@HOST FILE (see --help)"
host=${args[0]}
file=${args[1]}
[[ -f $file ]] || die "no such file: $file"

remote() { ssh "${ssh_opts[@]}" "$host" "$@"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A bundle from a raw disk image: its one version on the EFI partition.
bundle_from_image() {
    local img=$1 start part v
    read -r start _ < <(partition_of "$img" LVS-EFI)
    part="$img@@$((start * 512))"
    export MTOOLS_SKIP_CHECK=1
    v=$(mdir -i "$part" -b ::/lvs/ 2>/dev/null | sed -n 's|^::/lvs/\([^/]*\)/*$|\1|p' | head -n 1)
    [[ -n $v ]] || die "$img has no version on its EFI partition"
    local d=$tmp/b/lvs-update
    mkdir -p "$d"
    echo "$v" >"$d/VERSION"
    mtype -i "$part" "::/lvs/$v/flavour" >"$d/FLAVOUR" 2>/dev/null || die "$img: no ::/lvs/$v/flavour"
    mcopy -i "$part" "::/lvs/$v/vmlinuz" "$d/vmlinuz"
    mcopy -i "$part" "::/lvs/$v/initrd.img" "$d/initrd.img"
    mcopy -i "$part" "::/lvs/$v/cmdline" "$d/cmdline"
    mcopy -i "$part" "::/EFI/Linux/lvs-$v.efi" "$d/lvs.efi"
    (cd "$d" && sha256sum VERSION FLAVOUR vmlinuz initrd.img lvs.efi cmdline >SHA256SUMS)
    tar -C "$tmp/b" -cf "$tmp/bundle.update" lvs-update
    echo "$tmp/bundle.update"
}

case $(head -c 4 "$file" | od -An -c | tr -d ' ') in
QFI*) die "$file is a qcow2 image: give the .update bundle or the raw .img" ;;
esac
if tar -tf "$file" lvs-update/VERSION >/dev/null 2>&1; then
    bundle=$file
else
    bundle=$(bundle_from_image "$file")
fi
new=$(tar -xOf "$bundle" lvs-update/VERSION)

read -r old boot_id < <(remote 'echo "$(sed -n s/^VERSION=//p /etc/lvs-release) $(cat /proc/sys/kernel/random/boot_id)"') ||
    die "cannot reach $host over SSH"
log "$host runs $old; installing $new ($(du -h "$bundle" | cut -f1))"
remote lvs-boot install ${tries:+--tries "$tries"} $force <"$bundle" || die "the appliance refused the update"

if ((!reboot)); then
    log "installed; $new starts at the next reboot (lvs-boot list shows the versions)"
    exit 0
fi
log "rebooting $host"
remote reboot || true
((wait_s > 0)) || exit 0

# Wait for the outcome: the new version blessed, or the old one back.
deadline=$((SECONDS + wait_s))
while ((SECONDS < deadline)); do
    sleep 5
    state=$(remote 'echo "$(cat /proc/sys/kernel/random/boot_id) $(sed -n s/^VERSION=//p /etc/lvs-release) $(cat /run/lvs/trial 2>/dev/null)"' 2>/dev/null || true)
    read -r boot running trial <<<"$state"
    # Still the boot that installed the update (the reboot is under way).
    [[ -z $boot || $boot == "$boot_id" ]] && continue
    if [[ $running == "$new" && $trial == no ]]; then
        log "$host runs $new, and lvsd answers: the update is done"
        exit 0
    fi
    if [[ -n $running && $running != "$new" ]]; then
        log "$host fell back to $running: $new could not start lvsd (its console and lvs-boot list say more)"
        exit 3
    fi
done
die "no outcome after ${wait_s}s: look at $host's console"
