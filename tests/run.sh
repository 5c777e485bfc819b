#!/usr/bin/env bash
# The project's test command: installs the Debian packages the tests use
# (only those missing), checks formatting and lints, builds every target and
# runs every test. Extra arguments go to `cargo test` (e.g. `-- --nocapture`).
#
# The end-to-end tests build network namespaces and need root. As root they
# must run: LVS_REQUIRE_NETNS=1 is set (unless already set), so a machine
# without namespace support fails instead of skipping. Not as root they are
# skipped, each saying why.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

packages=(iproute2 nftables ethtool curl wrk socat tcpdump procps)

is_root() { [[ $(id -u) -eq 0 ]]; }

install_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "run.sh: no dpkg-query (not Debian?): not installing ${packages[*]}" >&2
        return 0
    fi
    local missing=() p
    for p in "${packages[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) != installed ]]; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if ! is_root; then
        echo "run.sh: missing packages (${missing[*]}), and not root to install them;" \
            "the namespace tests will be skipped anyway" >&2
        return 0
    fi
    echo "run.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
}

install_packages

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The namespace tests run the lvsd and lvsadm binaries from the same target
# directory, so build them (and every other target) first.
cargo build --workspace --all-targets

if is_root; then
    export LVS_REQUIRE_NETNS="${LVS_REQUIRE_NETNS:-1}"
else
    echo "run.sh: not root: the network-namespace tests will be skipped"
fi
cargo test --workspace "$@"
