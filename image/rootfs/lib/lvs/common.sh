# Shared by the appliance's scripts (busybox sh). Sourced, never run.
#
# Paths:
#   /config   the FAT configuration partition (label LVS-CONFIG), read-write
#   /state    the ext4 state partition (label lvs-state): SSH host key, the
#             last good lvsd config; a tmpfs when the partition is missing
#   /boot     the EFI system partition (label LVS-EFI), mounted only while
#             lvs-boot changes it
#   /run/lvs  this boot's facts: version, boot mode, the lvsd config in use

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

LVS_RUN=/run/lvs
LVS_CONFIG_DIR=/config
LVS_STATE_DIR=/state
LVS_ESP_DIR=/boot
LVS_LOG=/var/log/lvs.log

# The running image's version, flavour and build, from /etc/lvs-release.
lvs_release() {
    sed -n "s/^$1=//p" /etc/lvs-release 2>/dev/null
}

# say MESSAGE: one line on every active console (the serial port and the
# screen), in the log file and in syslog. Console lines start with "lvs:" so
# they stand out among kernel messages (and tests can wait for them).
say() {
    local c
    for c in $(cat /sys/class/tty/console/active 2>/dev/null); do
        [ -c "/dev/$c" ] && printf 'lvs: %s\r\n' "$*" >"/dev/$c" 2>/dev/null
    done
    printf '%s lvs: %s\n' "$(date '+%F %T')" "$*" >>"$LVS_LOG" 2>/dev/null
    logger -t lvs -- "$*" 2>/dev/null
    return 0
}

# The value of a `key value...` line in a settings file ($2, default
# /config/network.conf); the last such line wins.
setting() {
    local file=${2:-$LVS_CONFIG_DIR/network.conf}
    [ -f "$file" ] || return 0
    tr -d '\r' <"$file" | sed -n "s/^[[:space:]]*$1[[:space:]]\{1,\}//p" |
        sed 's/[[:space:]]*#.*$//; s/[[:space:]]*$//' | tail -n 1
}

# The admin socket named in an lvsd config file (default /run/lvsd/lvsd.sock).
admin_socket_of() {
    local s
    s=$(sed -n 's/^[[:space:]]*admin_socket[[:space:]]*=[[:space:]]*["'\'']\([^"'\'']*\)["'\''].*/\1/p' "$1" 2>/dev/null | head -n 1)
    echo "${s:-/run/lvsd/lvsd.sock}"
}

# Whether lvsd answers on its admin socket.
lvsd_answers() {
    local sock
    sock=$(admin_socket_of "$LVS_RUN/lvsd.toml")
    timeout 5 lvsadm --socket "$sock" -L -n >/dev/null 2>&1
}

# The booted boot mode: efi or bios.
boot_mode() {
    if [ -d /sys/firmware/efi ]; then echo efi; else echo bios; fi
}

# Finds the block device of a filesystem label, waiting up to $2 seconds.
device_of_label() {
    local i=0 dev
    while [ "$i" -le "${2:-0}" ]; do
        dev=$(findfs "LABEL=$1" 2>/dev/null) && [ -n "$dev" ] && {
            echo "$dev"
            return 0
        }
        i=$((i + 1))
        [ "$i" -le "${2:-0}" ] && sleep 1
    done
    return 1
}
