#!/usr/bin/env bash
# hubgate demo: devices reach a "private" IoT hub through the gateway.
#
#   bash demo/demo.sh [path/to/hubgate]        (make demo)
#
# The whole topology runs on this machine, with throwaway certificates:
#
#   device (mosquitto_pub, openssl s_client, Azure IoT SDK for Node.js)
#     | dials demo-hub.azure-devices.net:8883 / :443, which the hosts file
#     | points at the gateway (127.0.0.2); TLS is checked for that name
#     v
#   hubgate on 127.0.0.2:8883 and :443 -- peeks the SNI, routes it to
#     | demo-hub.privatelink.azure-devices.net, resolved through the
#     | private DNS zone (dnsmasq on 127.0.0.1:5353), same port as dialled
#     v
#   the "private" hub: Mosquitto on 127.0.0.1:8883 (MQTT over TLS) and
#   127.0.0.1:443 (MQTT over TLS WebSockets), plus a plain port where a
#   watcher counts what arrived.
#
# Debian 12's Mosquitto (2.0.11) binds its WebSockets listener to every
# address whatever the config says, so it cannot sit on 443 next to the
# gateway's 127.0.0.2:443. It listens on 8443 instead, and the hub's 443 is
# a port mapping in front of it (an nftables DNAT rule inside the
# namespace; a small relay in the preload mode), as a private endpoint's
# load balancer would map it.
#
# As root everything runs inside a network namespace that has nothing but
# its own loopback device, so there is no route out of it. Without root (or
# with HG_DEMO_MODE=preload) it runs on this machine's loopback with free
# high ports instead: the devices are told where to connect (openssl's
# -connect, the SDK through preload-connect.js) while still sending and
# checking the hub's name; mosquitto_pub is skipped there, as it cannot
# connect to one address while checking another name.
#
# Prints PASS/FAIL per check and a summary; exits non-zero on any failure.
# Every client step has a time limit; the whole run takes a few seconds.
# HG_DEMO_KEEP=1 keeps the folder with every config and log for a look.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
hubgate=${1:-$root/build/hubgate}
node_dir=$root/tests/e2e/node

hub=demo-hub.azure-devices.net
private_name=demo-hub.privatelink.azure-devices.net
cli_count=10 # messages from mosquitto_pub
sdk_count=5  # messages from each SDK transport
mode=${HG_DEMO_MODE:-auto}

# ---------------------------------------------------------------- helpers

checks=()
failed=0
started=$SECONDS

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
pass() {
    checks+=("PASS  $*")
    say "   PASS  $*"
}
fail() {
    checks+=("FAIL  $*")
    failed=$((failed + 1))
    say "   FAIL  $*"
}
skip() {
    checks+=("SKIP  $*")
    say "   SKIP  $*"
}
indent() { sed 's/^/      /'; }

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
    local limit=$1
    shift
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# True once process $1 (a child of this script) has exited.
exited() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 0
    [[ -z $state || $state == Z ]]
}

# A port free for TCP and UDP on 127.0.0.1 and 127.0.0.2 and for TCP on
# every address (the preload mode puts the hub on one loopback address and
# the gateway on the other, with the same port).
free_port() {
    python3 - <<'EOF'
import socket
while True:
    held = [socket.socket(socket.AF_INET6)]
    held[0].bind(("::", 0))
    port = held[0].getsockname()[1]
    held[0].close()
    try:
        for host, kind in (("127.0.0.1", socket.SOCK_STREAM),
                           ("127.0.0.2", socket.SOCK_STREAM),
                           ("127.0.0.1", socket.SOCK_DGRAM)):
            s = socket.socket(type=kind)
            held.append(s)
            s.bind((host, port))
    except OSError:
        continue
    print(port)
    break
EOF
}

# ---------------------------------------------------------------- setup

if [[ ! -x $hubgate ]]; then
    say "demo: no hubgate binary at $hubgate (run make build)" >&2
    exit 2
fi
hubgate=$(cd "$(dirname "$hubgate")" && pwd)/$(basename "$hubgate")
for tool in mosquitto mosquitto_pub mosquitto_sub dnsmasq openssl curl \
    python3 stdbuf; do
    command -v "$tool" >/dev/null ||
        { say "demo: $tool missing (run scripts/install-deps.sh)" >&2; exit 2; }
done

if [[ $mode == auto ]]; then
    mode=preload
    if [[ $(id -u) -eq 0 ]] && command -v ip >/dev/null &&
        command -v nft >/dev/null; then
        mode=netns
    fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hg-demo.XXXXXX")
ns=""
pids=()
# Runs a command where the demo's network is: inside the namespace, or
# here in the preload mode. Background jobs use "${ns_exec[@]}" directly,
# so that $! is the server itself.
ns_exec=()
in_ns() { "${ns_exec[@]}" "$@"; }

cleanup() {
    local rc=$?
    set +e
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 30); do
            exited "$pid" && break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ -n $ns ]]; then
        # Anything still inside the namespace was started by this demo.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
        rm -rf "/etc/netns/$ns"
    fi
    if [[ -n ${HG_DEMO_KEEP:-} ]]; then
        echo "demo: kept $tmp"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

if [[ $mode == netns ]]; then
    ns=hg-$$-demo
    gw_addr=127.0.0.2
    mqtt_port=8883
    wss_port=443
    hub_wss_port=8443
    plain_port=1883
    dns_port=5353
    admin=127.0.0.1:9100
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    # Inside, the hub's public name points at the gateway, like a device's
    # view in the field; any other name fails at once (no DNS server on 53).
    mkdir -p "/etc/netns/$ns"
    printf '127.0.0.1 localhost\n%s %s\n' "$gw_addr" "$hub" \
        >"/etc/netns/$ns/hosts"
    printf 'nameserver 127.0.0.1\n' >"/etc/netns/$ns/resolv.conf"
    ns_exec=(ip netns exec "$ns")
    where="network namespace $ns (loopback only)"
else
    gw_addr=127.0.0.2
    mqtt_port=$(free_port)
    wss_port=$(free_port)
    hub_wss_port=$(free_port)
    plain_port=$(free_port)
    dns_port=$(free_port)
    admin=127.0.0.1:$(free_port)
    ns_exec=()
    where="this machine's loopback, free ports (no root: preload mode)"
fi

say "hubgate demo: $hubgate"
say "   running in $where"
say "   devices dial $hub:$mqtt_port (MQTT/TLS) and :$wss_port (MQTT/WSS)"
say "   gateway $gw_addr -> $private_name -> hub 127.0.0.1"

step "certificates (throwaway CA, server certificate for $hub)"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 2 -sha256 \
    -subj "/CN=hubgate demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$tmp/hub.key" -out "$tmp/hub.csr" -subj "/CN=$hub" 2>/dev/null
cat >"$tmp/hub.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$hub
EOF
openssl x509 -req -in "$tmp/hub.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -out "$tmp/hub.pem" -days 2 -sha256 -extfile "$tmp/hub.ext" \
    -set_serial "0x$(openssl rand -hex 8)" 2>/dev/null
say "   the hub's certificate names only $hub, not the private name"

step "private DNS zone: $private_name -> 127.0.0.1 (dnsmasq :$dns_port)"
printf '127.0.0.1 %s\n' "$private_name" >"$tmp/private-zone.hosts"
"${ns_exec[@]}" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts \
    --addn-hosts="$tmp/private-zone.hosts" --listen-address=127.0.0.1 \
    --bind-interfaces --port="$dns_port" --local-ttl=5 --log-queries \
    --log-facility=- --local=/privatelink.azure-devices.net/ \
    >"$tmp/dnsmasq.log" 2>&1 &
pids+=($!)
wait_for 10 grep -q "read $tmp/private-zone.hosts" "$tmp/dnsmasq.log" ||
    { cat "$tmp/dnsmasq.log"; say "demo: dnsmasq did not start" >&2; exit 1; }

step "the private hub: Mosquitto on 127.0.0.1:$mqtt_port (TLS) and :$wss_port (WSS, mapped to $hub_wss_port)"
{
    # Running as root, Mosquitto would switch to its own user, which cannot
    # read this demo's private folder.
    [[ $(id -u) -ne 0 ]] || echo "user root"
    cat <<EOF
per_listener_settings false
allow_anonymous true
max_queued_messages 0
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
listener $plain_port 127.0.0.1
listener $mqtt_port 127.0.0.1
certfile $tmp/hub.pem
keyfile $tmp/hub.key
listener $hub_wss_port 127.0.0.1
protocol websockets
certfile $tmp/hub.pem
keyfile $tmp/hub.key
EOF
} >"$tmp/mosquitto.conf"
"${ns_exec[@]}" mosquitto -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
pids+=($!)
wait_for 10 grep -q 'mosquitto version .* running' "$tmp/mosquitto.log" ||
    { cat "$tmp/mosquitto.log"; say "demo: mosquitto did not start" >&2; exit 1; }

# The hub's port 443 maps to Mosquitto's WebSockets port.
if [[ $mode == netns ]]; then
    in_ns nft -f - <<EOF
table ip private_endpoint {
    chain output {
        type nat hook output priority -100; policy accept;
        ip daddr 127.0.0.1 tcp dport $wss_port dnat to 127.0.0.1:$hub_wss_port
    }
}
EOF
else
    python3 - "$wss_port" "$hub_wss_port" >"$tmp/relay.log" 2>&1 <<'EOF' &
import socket, sys, threading
listen, target = int(sys.argv[1]), int(sys.argv[2])
def pipe(a, b):
    try:
        while (data := a.recv(65536)):
            b.sendall(data)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
srv = socket.create_server(("127.0.0.1", listen))
while True:
    a, _ = srv.accept()
    b = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pipe, args=(a, b), daemon=True).start()
    threading.Thread(target=pipe, args=(b, a), daemon=True).start()
EOF
    pids+=($!)
fi

# The watcher reads everything devices send, on the hub's side.
"${ns_exec[@]}" stdbuf -oL mosquitto_sub -V mqttv311 -h 127.0.0.1 -p "$plain_port" \
    -i hub-watcher -q 1 -t 'devices/+/messages/events/#' -F '%t %p' \
    >"$tmp/arrived.txt" 2>"$tmp/watcher.log" &
pids+=($!)
wait_for 10 grep -q 'hub-watcher 1 devices/' "$tmp/mosquitto.log" ||
    { say "demo: the hub watcher did not subscribe" >&2; exit 1; }

step "hubgate on $gw_addr:$mqtt_port and :$wss_port, admin $admin"
cat >"$tmp/hubgate.yaml" <<EOF
# One hub behind the gateway: its public name routes to its private name,
# resolved through the private zone; the backend port is the one dialled.
admin:
  listen: "$admin"
log:
  level: info
resolver:
  servers: ["127.0.0.1:$dns_port"]
  min_ttl: 1s
  max_ttl: 30s
listeners:
  - name: mqtts
    bind: ["$gw_addr:$mqtt_port"]
  - name: mqtt-wss
    bind: ["$gw_addr:$wss_port"]
routes:
  - name: demo-hub
    sni: ["$hub"]
    backend: $private_name
default_route: none
# Behind a load balancer, keep accepting a while after SIGTERM so that its
# probe notices, then close tunnels spread over a window; the demo has no
# load balancer, so it stops at once.
shutdown:
  ready_delay: 0s
  drain: 1s
EOF
indent <"$tmp/hubgate.yaml"
if out=$("$hubgate" -t -c "$tmp/hubgate.yaml" 2>&1); then
    pass "hubgate -t accepts the config"
else
    fail "hubgate -t rejects the config: $out"
fi
"${ns_exec[@]}" "$hubgate" -c "$tmp/hubgate.yaml" >"$tmp/hubgate.out" \
    2>"$tmp/hubgate.log" &
hubgate_pid=$!
pids+=("$hubgate_pid")
readyz() {
    [[ $(in_ns curl --noproxy '*' -s -o /dev/null -w '%{http_code}' \
        --max-time 2 "http://$admin/readyz") == 200 ]]
}
if wait_for 10 readyz; then
    pass "gateway ready (/readyz 200)"
else
    fail "gateway not ready within 10 s"
    say "   hubgate log:"
    indent <"$tmp/hubgate.log"
    exit 1
fi

step "mosquitto_pub: $cli_count messages to $hub:$mqtt_port, certificate checked by name"
if [[ $mode == netns ]]; then
    # An IoT Hub style SAS token for the device: the gateway never needs
    # it (it travels inside TLS); Mosquitto accepts any password.
    key_hex=$(openssl rand -hex 32)
    expiry=$(($(date +%s) + 3600))
    resource="$hub%2Fdevices%2Fcli-device"
    sig=$(printf '%s\n%s' "$resource" "$expiry" |
        openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_hex" -binary |
        base64 | sed 's/+/%2B/g; s#/#%2F#g; s/=/%3D/g')
    sas="SharedAccessSignature sr=$resource&sig=$sig&se=$expiry"
    if seq 1 "$cli_count" |
        sed 's/.*/{"deviceId":"cli-device","seq":&}/' |
        in_ns timeout 10 mosquitto_pub -V mqttv311 -h "$hub" -p "$mqtt_port" \
            --cafile "$tmp/ca.pem" -i cli-device \
            -u "$hub/cli-device/?api-version=2021-04-12" -P "$sas" \
            -q 1 -t devices/cli-device/messages/events/ -l \
            >"$tmp/pub.log" 2>&1; then
        pass "mosquitto_pub sent $cli_count messages through the gateway"
    else
        fail "mosquitto_pub: $(tr '\n' ' ' <"$tmp/pub.log")"
    fi
else
    skip "mosquitto_pub (needs the namespace's hosts file: run as root)"
fi

step "openssl s_client through the gateway: -servername $hub -verify_hostname $hub"
if [[ $mode == netns ]]; then
    connect_host=$hub
else
    connect_host=$gw_addr
fi
for port in "$mqtt_port" "$wss_port"; do
    if in_ns timeout 5 openssl s_client -connect "$connect_host:$port" \
        -servername "$hub" -verify_hostname "$hub" -verify_return_error \
        -CAfile "$tmp/ca.pem" -brief </dev/null >"$tmp/s_client.log" 2>&1 &&
        grep -q 'Verification: OK' "$tmp/s_client.log"; then
        pass "TLS to $hub via $connect_host:$port verified ($(
            grep -m1 'Protocol version' "$tmp/s_client.log" |
                sed 's/.*: //'), peer $(grep -m1 'Peer certificate' \
                "$tmp/s_client.log" | sed 's/.*: //'))"
    else
        fail "s_client via $connect_host:$port: $(tail -3 "$tmp/s_client.log" |
            tr '\n' ' ')"
    fi
done
# A name no route serves is refused by the gateway (default_route: none):
# the connection is closed at once, before any TLS answer.
rc=0
in_ns timeout 5 openssl s_client -connect "$connect_host:$mqtt_port" \
    -servername other-hub.azure-devices.net -CAfile "$tmp/ca.pem" -brief \
    </dev/null >"$tmp/s_client-other.log" 2>&1 || rc=$?
if ((rc == 124)); then
    fail "an unknown SNI (other-hub.azure-devices.net): no answer in 5 s"
elif ((rc == 0)) || grep -q 'Protocol version' "$tmp/s_client-other.log"; then
    fail "an unknown SNI (other-hub.azure-devices.net) got through"
else
    pass "an unknown SNI (other-hub.azure-devices.net) is refused"
fi

step "Azure IoT device SDK for Node.js: $sdk_count messages each over Mqtt and MqttWs"
sdk_ok=1
if ! command -v node >/dev/null; then
    fail "node missing (scripts/install-deps.sh)"
    sdk_ok=0
elif [[ ! -d $node_dir/node_modules ]]; then
    fail "tests/e2e/node/node_modules missing (scripts/install-deps.sh)"
    sdk_ok=0
fi
if ((sdk_ok)); then
    for transport in mqtt mqttws; do
        key=$(openssl rand -base64 32)
        cs="HostName=$hub;DeviceId=sdk-$transport;SharedAccessKey=$key"
        node_args=("$node_dir/send.js" --transport "$transport" --ca "$tmp/ca.pem"
            --count "$sdk_count" --timeout 15)
        if [[ $mode == netns ]]; then
            run_node=(in_ns timeout 25 env "DEVICE_CONNECTION_STRING=$cs" node)
        else
            run_node=(timeout 25 env "DEVICE_CONNECTION_STRING=$cs"
                "HG_CONNECT_TO=8883=$gw_addr:$mqtt_port,443=$gw_addr:$wss_port"
                node --require "$node_dir/preload-connect.js")
        fi
        if "${run_node[@]}" "${node_args[@]}" >"$tmp/sdk.out" 2>&1; then
            pass "SDK $transport: $(tail -1 "$tmp/sdk.out")"
        else
            fail "SDK $transport: $(tr '\n' ' ' <"$tmp/sdk.out")"
        fi
    done
fi

step "what arrived at the hub"
arrived() { grep -c "^devices/$1/messages/events/" "$tmp/arrived.txt" || true; }
devices=()
declare -A sent=()
if [[ $mode == netns ]]; then
    devices+=(cli-device)
    sent[cli-device]=$cli_count
fi
if ((sdk_ok)); then
    devices+=(sdk-mqtt sdk-mqttws)
    sent[sdk-mqtt]=$sdk_count
    sent[sdk-mqttws]=$sdk_count
fi
all_in() {
    local d
    for d in "${devices[@]}"; do
        (($(arrived "$d") >= sent[$d])) || return 1
    done
}
wait_for 5 all_in || true
for d in "${devices[@]}"; do
    n=$(arrived "$d")
    if ((n == sent[$d])); then
        pass "device $d: $n of ${sent[$d]} messages arrived"
    else
        fail "device $d: $n of ${sent[$d]} messages arrived"
    fi
done
say "   last messages:"
tail -4 "$tmp/arrived.txt" | cut -c1-150 | indent

step "gateway metrics (hubgate_ lines of /metrics)"
if in_ns curl --noproxy '*' -fsS --max-time 5 "http://$admin/metrics" \
    >"$tmp/metrics.txt" 2>"$tmp/metrics.err"; then
    grep '^hubgate_' "$tmp/metrics.txt" | indent || true
    # Every connection that reached the route: mosquitto_pub, two s_client
    # handshakes, and one per SDK transport.
    want=2
    [[ $mode == netns ]] && want=$((want + 1))
    ((sdk_ok)) && want=$((want + 2))
    got=$(awk '/^hubgate_connections_total\{/ && /route="demo-hub"/ \
        { s += $NF } END { printf "%d", s }' "$tmp/metrics.txt")
    if ((got >= want)); then
        pass "hubgate_connections_total{route=\"demo-hub\"} = $got (>= $want)"
    else
        fail "hubgate_connections_total{route=\"demo-hub\"} = $got, want >= $want"
    fi
    # The s_client with an unknown name was refused before routing.
    refused=$(awk '/^hubgate_refused_total\{/ && /reason="unknown_sni"/ \
        { s += $NF } END { printf "%d", s }' "$tmp/metrics.txt")
    if ((refused >= 1)); then
        pass "hubgate_refused_total{reason=\"unknown_sni\"} = $refused"
    else
        fail "hubgate_refused_total{reason=\"unknown_sni\"} = $refused, want >= 1"
    fi
else
    fail "GET /metrics: $(cat "$tmp/metrics.err")"
fi

step "gateway log (last lines)"
tail -8 "$tmp/hubgate.log" | indent

step "shutdown: SIGTERM drains the gateway"
t0=$SECONDS
kill -TERM "$hubgate_pid"
rc=0
if wait_for 40 exited "$hubgate_pid"; then
    wait "$hubgate_pid" || rc=$?
    if ((rc == 0)); then
        pass "hubgate exited 0 after SIGTERM ($((SECONDS - t0)) s)"
    else
        fail "hubgate exited $rc after SIGTERM"
        tail -5 "$tmp/hubgate.log" | indent
    fi
else
    fail "hubgate still running 40 s after SIGTERM"
fi

step "summary ($((SECONDS - started)) s, $mode mode)"
printf '   %s\n' "${checks[@]}"
if ((failed)); then
    say "demo: FAIL ($failed of ${#checks[@]} checks failed)"
    exit 1
fi
say "demo: PASS (${#checks[@]} checks)"
