#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the demo need,
# only when some are missing, so a fresh Debian 12 machine needs nothing else.
# Run as root (or with sudo available). Safe to run again.
set -euo pipefail

packages=(
    # build
    build-essential cmake pkg-config clang clang-format
    libyaml-dev libc-ares-dev libmicrohttpd-dev liburcu-dev libcmocka-dev
    libssl-dev libqpid-proton11-dev
    # tests and demo: the real servers and clients
    mosquitto mosquitto-clients dnsmasq-base nftables iproute2 openssl
    python3 procps psmisc valgrind curl coreutils
    # the systemd unit's test: systemd-analyze, setpriv and prlimit
    systemd util-linux
    # benchmarks (make bench): the peers hubgate is measured against, and
    # strace for system calls per message (callgrind comes with valgrind),
    # liburing for the bare io_uring forwarder measured beside them
    haproxy nginx libnginx-mod-stream strace liburing-dev
    # hubsim's tests: RabbitMQ with its AMQP 1.0 plugin as the AMQP broker,
    # proton's Python binding for the AMQP consumer and IoT Hub stand-in,
    # Chromium (headless, no network) to open the HTML report
    rabbitmq-server python3-qpid-proton chromium
)
# Daemons whose Debian packages start a system service on install; the
# benchmarks start their own copies on free loopback ports and need none.
services=(haproxy nginx rabbitmq-server)
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
    # Keep maintainer scripts from starting services (nginx would take port
    # 80): invoke-rc.d and deb-systemd-invoke obey policy-rc.d's 101. A
    # policy the machine already has is left alone.
    policy=/usr/sbin/policy-rc.d
    own_policy=""
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        own_policy=1
        trap '$sudo rm -f "$policy"' EXIT
    fi
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null
    [[ -z $own_policy ]] || { $sudo rm -f "$policy"; trap - EXIT; }
    # A service installed just now must not run now or at the next boot.
    for s in "${services[@]}"; do
        [[ " ${missing[*]} " == *" $s "* ]] || continue
        if [[ -d /run/systemd/system ]]; then
            $sudo systemctl disable --now "$s" >/dev/null 2>&1 || true
        elif [[ -x /etc/init.d/$s ]]; then
            $sudo /etc/init.d/"$s" stop >/dev/null 2>&1 || true
            $sudo update-rc.d "$s" disable >/dev/null 2>&1 || true
        fi
    done
    # RabbitMQ's maintainer scripts leave Erlang's port mapper (epmd) running
    # on 4369 even with the service stopped; the tests start their own.
    if [[ " ${missing[*]} " == *" rabbitmq-server "* ]]; then
        $sudo pkill -u rabbitmq -x epmd >/dev/null 2>&1 || true
    fi
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
