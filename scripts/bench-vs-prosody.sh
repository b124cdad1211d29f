#!/usr/bin/env bash
# Runs the same `intercloud bench c2s` (and `bench idle`) against Debian's
# Prosody and against our node, on this machine, on loopback, alternating
# rounds, and prints the figures side by side with their ratio.
#
#   bash scripts/bench-vs-prosody.sh            # defaults below
#   USERS=100 MESSAGES=5000 ROUNDS=5 IDLE=2000 bash scripts/bench-vs-prosody.sh
#
# Needs root (installs prosody if missing, runs it as user prosody).
# Stops only the processes it started, by PID.
set -euo pipefail
USERS=${USERS:-50}
MESSAGES=${MESSAGES:-2000}
WINDOW=${WINDOW:-100}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-1000}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
PY=/usr/bin/python3

if ! command -v prosody >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody >/dev/null
fi
cargo build --release --quiet
B=$CARGO_TARGET_DIR/release/intercloud
ulimit -n 65536 2>/dev/null || ulimit -n 8192 || true

work=$(mktemp -d /tmp/bench-vs-prosody.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# --- Prosody, with a config of its own (registration open on loopback)
PP=$(free_port)
$B init "$work/pcert" --domain prosody.bench --c2s-port "$(free_port)" --s2s-port "$(free_port)" --p2p-port 0 >/dev/null
mkdir -p "$work/prosody/data"
cp "$work/pcert/tls/cert.pem" "$work/prosody/prosody.crt"
cp "$work/pcert/tls/key.pem" "$work/prosody/prosody.key"
cat > "$work/prosody/prosody.cfg.lua" <<LUA
daemonize = false
pidfile = "$work/prosody/prosody.pid"
data_path = "$work/prosody/data"
log = { warn = "$work/prosody/prosody.log" }
interfaces = { "127.0.0.1" }
c2s_ports = { $PP }
s2s_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "message"; "iq"; "register" }
modules_disabled = { "s2s" }
allow_registration = true
authentication = "internal_hashed"
c2s_require_encryption = true
ssl = { certificate = "$work/prosody/prosody.crt"; key = "$work/prosody/prosody.key" }
VirtualHost "prosody.bench"
LUA
chown -R prosody:prosody "$work/prosody"
chmod 755 "$work"
start_prosody() {
    setpriv --reuid=prosody --regid=prosody --init-groups -- prosody --config "$work/prosody/prosody.cfg.lua" >/dev/null 2>&1 &
    PROSODY_PID=$!
    pids+=("$PROSODY_PID")
    wait_port "$PP"
}
start_prosody

# --- Our node, the same way (registration open, libp2p off)
OP=$(free_port)
$B init "$work/ours" --domain ours.bench --c2s-port "$OP" --s2s-port "$(free_port)" --p2p-port 0 >/dev/null
sed -i 's/^allow_registration = false/allow_registration = true/; s/^registrations_per_minute = 10$/registrations_per_minute = 1000000/; s/^max_connections_per_ip = .*/max_connections_per_ip = 100000/; s/^max_connections = .*/max_connections = 100000/' "$work/ours/intercloud.toml"
start_ours() {
    RUST_LOG=warn $B node --config "$work/ours/intercloud.toml" 2>>"$work/ours.log" &
    OURS_PID=$!
    pids+=("$OURS_PID")
    wait_port "$OP"
}
start_ours
stop_pid() { kill "$1" 2>/dev/null || true; for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }

run() { # name port domain
    $B bench c2s --server "127.0.0.1:$2" --domain "$3" --users "$USERS" --messages "$MESSAGES" \
        --window "$WINDOW" --register --json 2>/dev/null
}
field() { $PY -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, d))" "$1"; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); prosody $(dpkg-query -W -f '${Version}' prosody 2>/dev/null)"
echo "load: $USERS users in a ring, $MESSAGES messages each, window $WINDOW, $ROUNDS rounds each, alternating"
printf '%-8s %-6s %10s %10s %9s %9s %9s %6s %6s\n' server round logins/s msg/s p50_ms p95_ms p99_ms lost errors
ours_rates=(); prosody_rates=()
for r in $(seq 1 "$ROUNDS"); do
    for s in prosody ours; do
        if [ $s = prosody ]; then out=$(run prosody "$PP" prosody.bench); else out=$(run ours "$OP" ours.bench); fi
        rate=$(echo "$out" | field 'round(delivered_per_sec)')
        printf '%-8s %-6s %10s %10s %9s %9s %9s %6s %6s\n' $s "$r" \
            "$(echo "$out" | field 'round(logins_per_sec)')" "$rate" \
            "$(echo "$out" | field 'round(latency["p50_ms"],2)')" "$(echo "$out" | field 'round(latency["p95_ms"],2)')" \
            "$(echo "$out" | field 'round(latency["p99_ms"],2)')" "$(echo "$out" | field 'lost')" "$(echo "$out" | field 'errors')"
        if [ $s = prosody ]; then prosody_rates+=("$rate"); else ours_rates+=("$rate"); fi
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${ours_rates[@]}"); mp=$(median "${prosody_rates[@]}")
echo "median msg/s: ours $mo, prosody $mp, ratio $($PY -c "print(round($mo/max($mp,1),2))")x"

# Memory per idle session on freshly started servers (the load rounds above
# leave freed memory in the allocators, which new sessions would reuse).
stop_pid "$PROSODY_PID"; stop_pid "$OURS_PID"
start_prosody; start_ours
for s in prosody ours; do
    if [ $s = prosody ]; then port=$PP; dom=prosody.bench; pid=$PROSODY_PID; else port=$OP; dom=ours.bench; pid=$OURS_PID; fi
    # bench idle reads the server process's VmRSS (setpriv execs prosody in place).
    echo "idle $s: $($B bench idle --server "127.0.0.1:$port" --domain $dom --sessions "$IDLE" --register --pid "$pid" 2>&1 | tail -1)"
done
