#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the demo need,
# only when some are missing, so a fresh Debian 12 machine needs nothing else.
# Run as root (or with sudo available). Safe to run again.
set -euo pipefail

packages=(
    # build
    build-essential cmake pkg-config clang clang-format
    libyaml-dev libc-ares-dev libmicrohttpd-dev liburcu-dev libcmocka-dev
    libssl-dev
    # tests and demo: the real servers and clients
    mosquitto mosquitto-clients dnsmasq-base nftables iproute2 openssl
    python3 procps psmisc valgrind curl coreutils
)
# Node.js and npm run the Azure IoT device SDK in the end-to-end tests and
# the demo; a machine that already has them (from any source) keeps its own.
command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null
fi

# The Debian mosquitto package may start a system broker on 1883; the tests
# start their own brokers on free ports and never use it.

# npm packages for the end-to-end tests (the Azure IoT device SDK), into the
# test folder, from its lock file.
here=$(cd "$(dirname "$0")/.." && pwd)
node_dir="$here/tests/e2e/node"
if [[ -f "$node_dir/package.json" && ! -d "$node_dir/node_modules" ]]; then
    command -v npm >/dev/null || { echo "install-deps: npm missing" >&2; exit 1; }
    echo "install-deps: npm ci in tests/e2e/node"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
