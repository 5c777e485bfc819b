#!/usr/bin/env bash
# image/configure.sh: reads and writes the configuration partition of a raw
# appliance disk image (or a disk holding one) without mounting anything.
#
#   image/configure.sh IMAGE [--lvsd FILE] [--network FILE]
#                            [--authorized-keys FILE] [--put FILE NAME]
#                            [--get NAME] [--list]
#
# --lvsd, --network, --authorized-keys  replace lvsd.toml, network.conf,
#             authorized_keys with FILE (checked first with lvsd --check when
#             an lvsd binary is at hand)
# --put FILE NAME   copy FILE to the partition as NAME
# --get NAME        print NAME from the partition
# --list            list the partition's files
#
# A qcow2 image: convert it first (qemu-img convert -O raw), or edit the
# files after boot over SSH (they are in /config; run lvs-reload).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=image/lib.sh
. "$here/lib.sh"

(($#)) || die "usage: image/configure.sh IMAGE [--lvsd FILE] [--network FILE] [--authorized-keys FILE] [--put FILE NAME] [--get NAME] [--list]"
img=$1
shift
[[ -e $img ]] || die "no such image: $img"
if [[ $(head -c 4 "$img" | od -An -c | tr -d ' ') == QFI* ]]; then
    die "$img is a qcow2 image: convert it to raw first (qemu-img convert -O raw)"
fi
read -r start _ < <(partition_of "$img" LVS-CONFIG)
export MTOOLS_SKIP_CHECK=1
part="$img@@$((start * 512))"

check_lvsd() {
    local lvsd
    lvsd=$(command -v lvsd || true)
    [[ -z $lvsd && -x $here/../target/image/x86_64-unknown-linux-gnu/release/lvsd ]] &&
        lvsd=$here/../target/image/x86_64-unknown-linux-gnu/release/lvsd
    if [[ -n $lvsd ]]; then
        "$lvsd" --check --config "$1" >/dev/null || die "$1 is not a good lvsd config (lvsd --check says why, above)"
    fi
}

while (($#)); do
    case $1 in
    --lvsd)
        check_lvsd "$2"
        mcopy -o -i "$part" "$2" ::/lvsd.toml
        shift
        ;;
    --network)
        mcopy -o -i "$part" "$2" ::/network.conf
        shift
        ;;
    --authorized-keys)
        mcopy -o -i "$part" "$2" ::/authorized_keys
        shift
        ;;
    --put)
        mcopy -o -i "$part" "$2" "::/$3"
        shift 2
        ;;
    --get)
        mtype -i "$part" "::/$2"
        shift
        ;;
    --list)
        mdir -i "$part" ::/
        ;;
    *) die "unknown argument: $1" ;;
    esac
    shift
done
