#!/usr/bin/env bash
# Runs the same `intercloud bench c2s` (and `bench idle`, `bench pubsub`,
# `bench muc`) against Debian's Prosody, Debian's ejabberd and our node, on
# this machine, on loopback, alternating rounds, and prints the figures side
# by side with our ratio to each.
#
#   bash scripts/bench-vs-stock.sh            # defaults below
#   USERS=100 MESSAGES=5000 ROUNDS=5 IDLE=2000 bash scripts/bench-vs-stock.sh
#   WHAT="pubsub muc" bash scripts/bench-vs-stock.sh   # the many-to-many ones only
#
# Needs root (installs prosody and ejabberd if missing, runs them as users
# prosody and ejabberd, each with a config of its own; ejabberd with its
# c2s traffic shaper off and a listen backlog like ours, for a fair run).
# Stops only the processes it started, by PID.
set -euo pipefail
USERS=${USERS:-50}
MESSAGES=${MESSAGES:-2000}
WINDOW=${WINDOW:-100}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-1000}
WHAT=${WHAT:-c2s idle}
# bench pubsub: subscriber counts, and items published for each (same order);
# bench muc: rooms x occupants, messages each.
SUBSCRIBERS=${SUBSCRIBERS:-10 100 1000}
ITEMS=${ITEMS:-2000 1000 200}
PS_WINDOW=${PS_WINDOW:-50}
ROOMS=${ROOMS:-10}
OCCUPANTS=${OCCUPANTS:-10}
MUC_MESSAGES=${MUC_MESSAGES:-100}
MUC_WINDOW=${MUC_WINDOW:-10}
want() { [[ " $WHAT " == *" $1 "* ]]; }
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
PY=/usr/bin/python3

need=()
command -v prosody >/dev/null || need+=(prosody)
[ -x /usr/sbin/ejabberdctl ] || need+=(ejabberd)
if [ ${#need[@]} -gt 0 ]; then
    # Debian's own services stay off: we run ours.
    policy=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy=1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    [ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d
fi
cargo build --release --quiet
B=$CARGO_TARGET_DIR/release/intercloud
ulimit -n 65536 2>/dev/null || ulimit -n 8192 || true

work=$(mktemp -d /tmp/bench-vs-stock.XXXXXX)
pids=()
cleanup() {
    [ -n "${EJABBERD_PID:-}" ] && stop_ejabberd
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
-- bench pubsub's publisher creates its node (Prosody lets admins create).
admins = { "bench0@prosody.bench" }
VirtualHost "prosody.bench"
Component "pubsub.prosody.bench" "pubsub"
Component "conference.prosody.bench" "muc"
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

# --- ejabberd, with a config and a ctl config of its own (registration open
# on loopback, no traffic shaper, backlog 1024; Erlang distribution on a port
# of ours, no epmd daemon)
EP=$(free_port)
mkdir -p "$work/ejabberd/db" "$work/ejabberd/logs"
$B init "$work/ecert" --domain ejabberd.bench --c2s-port "$(free_port)" --s2s-port "$(free_port)" --p2p-port 0 >/dev/null
cat "$work/ecert/tls/cert.pem" "$work/ecert/tls/key.pem" > "$work/ejabberd/ejabberd.pem"
cat > "$work/ejabberd/ejabberd.yml" <<YML
hosts:
  - ejabberd.bench
loglevel: warning
certfiles:
  - "$work/ejabberd/ejabberd.pem"
listen:
  -
    port: $EP
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    shaper: c2s_shaper
    access: c2s
    backlog: 1024
    max_stanza_size: 262144
acl:
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  c2s:
    allow: all
  register:
    allow: all
shaper_rules:
  c2s_shaper: none
  s2s_shaper: none
max_fsm_queue: 100000
# No wait between two in-band registrations from one address (the load
# registers its users from loopback).
registration_timeout: infinity
modules:
  mod_caps: {}
  mod_disco: {}
  mod_muc: {}
  mod_ping: {}
  mod_pubsub: {}
  mod_roster: {}
  mod_register:
    access: register
YML
cat > "$work/ejabberd/ejabberdctl.cfg" <<CFG
ERLANG_NODE=bench$EP@localhost
EJABBERD_CONFIG_PATH=$work/ejabberd/ejabberd.yml
LOGS_DIR=$work/ejabberd/logs
SPOOL_DIR=$work/ejabberd/db
INET_DIST_INTERFACE=127.0.0.1
ERL_DIST_PORT=$(free_port)
CFG
chown -R ejabberd:ejabberd "$work/ejabberd"
ejctl() { (cd "$work/ejabberd" && setpriv --reuid=ejabberd --regid=ejabberd --init-groups -- env HOME="$work/ejabberd" /usr/sbin/ejabberdctl --ctl-config "$work/ejabberd/ejabberdctl.cfg" "$@"); }
start_ejabberd() {
    cd "$work/ejabberd"
    setpriv --reuid=ejabberd --regid=ejabberd --init-groups -- env HOME="$work/ejabberd" \
        /usr/sbin/ejabberdctl --ctl-config "$work/ejabberd/ejabberdctl.cfg" foreground >/dev/null 2>&1 &
    EJABBERD_PID=$!
    cd - >/dev/null
    pids+=("$EJABBERD_PID")
    for _ in $(seq 1 600); do (echo >/dev/tcp/127.0.0.1/"$EP") 2>/dev/null && return 0; sleep 0.1; done
    echo "ejabberd never listened:" >&2; tail -20 "$work/ejabberd/logs/ejabberd.log" >&2 2>/dev/null; return 1
}
# ejabberdctl runs the Erlang VM as its child: stop it through the node,
# then by PID (the VM is the child of the PID we hold).
stop_ejabberd() {
    ejctl stop >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do kill -0 "$EJABBERD_PID" 2>/dev/null || return 0; sleep 0.1; done
    local vm; vm=$(ejabberd_vm_pid)
    [ "$vm" != "$EJABBERD_PID" ] && kill -9 "$vm" 2>/dev/null || true
    kill -9 "$EJABBERD_PID" 2>/dev/null || true
}
# The Erlang VM's PID (named after our node), for bench idle: its memory is the server's.
ejabberd_vm_pid() { pgrep -f "beam.smp.*bench$EP@localhost" | head -1 | grep . || echo "$EJABBERD_PID"; }
start_ejabberd

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
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { $PY -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, d))" "$1"; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); prosody $(dpkg-query -W -f '${Version}' prosody 2>/dev/null), ejabberd $(dpkg-query -W -f '${Version}' ejabberd 2>/dev/null)"
if want c2s; then
echo "load: $USERS users in a ring, $MESSAGES messages each, window $WINDOW, $ROUNDS rounds each, alternating"
printf '%-8s %-6s %10s %10s %9s %9s %9s %6s %6s\n' server round logins/s msg/s p50_ms p95_ms p99_ms lost errors
ours_rates=(); prosody_rates=(); ejabberd_rates=()
for r in $(seq 1 "$ROUNDS"); do
    for s in prosody ejabberd ours; do
        case $s in
            prosody) out=$(run prosody "$PP" prosody.bench) ;;
            ejabberd) out=$(run ejabberd "$EP" ejabberd.bench) ;;
            ours) out=$(run ours "$OP" ours.bench) ;;
        esac
        rate=$(echo "$out" | field 'round(delivered_per_sec)')
        printf '%-8s %-6s %10s %10s %9s %9s %9s %6s %6s\n' $s "$r" \
            "$(echo "$out" | field 'round(logins_per_sec)')" "$rate" \
            "$(echo "$out" | field 'round(latency["p50_ms"],2)')" "$(echo "$out" | field 'round(latency["p95_ms"],2)')" \
            "$(echo "$out" | field 'round(latency["p99_ms"],2)')" "$(echo "$out" | field 'lost')" "$(echo "$out" | field 'errors')"
        case $s in
            prosody) prosody_rates+=("$rate") ;;
            ejabberd) ejabberd_rates+=("$rate") ;;
            ours) ours_rates+=("$rate") ;;
        esac
    done
done
mo=$(median "${ours_rates[@]}"); mp=$(median "${prosody_rates[@]}"); me=$(median "${ejabberd_rates[@]}")
echo "median msg/s: ours $mo, prosody $mp, ejabberd $me; ours / prosody $($PY -c "print(round($mo/max($mp,1),2))")x, ours / ejabberd $($PY -c "print(round($mo/max($me,1),2))")x"
fi

port_of() { case $1 in prosody) echo "$PP" ;; ejabberd) echo "$EP" ;; ours) echo "$OP" ;; esac; }
domain_of() { echo "$1.bench"; }
ratio() { $PY -c "print(round($1/max($2,1),2))"; }

if want pubsub; then
    echo "bench pubsub: one publisher, N subscribers of a fresh node on each server, window $PS_WINDOW (and 1 for fan-out latency); $ROUNDS rounds, alternating"
    printf '%-8s %6s %6s %6s %10s %12s %9s %9s %6s %6s\n' server subs items round items/s notes/s p50_ms p99_ms lost errors
    read -r -a subs_list <<<"$SUBSCRIBERS"; read -r -a items_list <<<"$ITEMS"
    for k in "${!subs_list[@]}"; do
        n=${subs_list[$k]}; items=${items_list[$k]}
        for win in "$PS_WINDOW" 1; do
            [ "$win" = 1 ] && [ "$n" != "${subs_list[-1]}" ] && continue
            [ "$win" = 1 ] && items=$(( items < 100 ? items : 100 ))
            declare -A rates=()
            for r in $(seq 1 "$ROUNDS"); do
                for s in prosody ejabberd ours; do
                    out=$($B bench pubsub --server "127.0.0.1:$(port_of $s)" --domain "$(domain_of $s)" --register \
                        --subscribers "$n" --items "$items" --window "$win" --concurrency 32 --json 2>/dev/null) || out='{"published_per_sec":0,"notifications_per_sec":0,"latency":{"p50_ms":0,"p99_ms":0},"lost":-1,"publish_errors":-1}'
                    rate=$(echo "$out" | field 'round(notifications_per_sec)')
                    printf '%-8s %6s %6s %6s %10s %12s %9s %9s %6s %6s\n' "$s" "$n" "$items" "$r/w$win" \
                        "$(echo "$out" | field 'round(published_per_sec)')" "$rate" \
                        "$(echo "$out" | field 'round(latency["p50_ms"],2)')" "$(echo "$out" | field 'round(latency["p99_ms"],2)')" \
                        "$(echo "$out" | field 'lost')" "$(echo "$out" | field 'publish_errors')"
                    rates[$s]="${rates[$s]:-} $rate"
                done
            done
            mo=$(median ${rates[ours]}); mp=$(median ${rates[prosody]}); me=$(median ${rates[ejabberd]})
            echo "median notifications/s, $n subscribers, window $win: ours $mo, prosody $mp, ejabberd $me; ours / prosody $(ratio "$mo" "$mp")x, ours / ejabberd $(ratio "$mo" "$me")x"
            unset rates
        done
    done
fi

if want muc; then
    echo "bench muc: $ROOMS rooms x $OCCUPANTS occupants, $MUC_MESSAGES messages each, window $MUC_WINDOW; $ROUNDS rounds, alternating"
    printf '%-8s %6s %12s %9s %9s %6s %6s\n' server round deliveries/s p50_ms p99_ms lost errors
    declare -A rates=()
    for r in $(seq 1 "$ROUNDS"); do
        for s in prosody ejabberd ours; do
            out=$($B bench muc --server "127.0.0.1:$(port_of $s)" --domain "$(domain_of $s)" --register \
                --rooms "$ROOMS" --occupants "$OCCUPANTS" --messages "$MUC_MESSAGES" --window "$MUC_WINDOW" --concurrency 32 --json 2>/dev/null) || out='{"delivered_per_sec":0,"latency":{"p50_ms":0,"p99_ms":0},"lost":-1,"errors":-1}'
            rate=$(echo "$out" | field 'round(delivered_per_sec)')
            printf '%-8s %6s %12s %9s %9s %6s %6s\n' "$s" "$r" "$rate" \
                "$(echo "$out" | field 'round(latency["p50_ms"],2)')" "$(echo "$out" | field 'round(latency["p99_ms"],2)')" \
                "$(echo "$out" | field 'lost')" "$(echo "$out" | field 'errors')"
            rates[$s]="${rates[$s]:-} $rate"
        done
    done
    mo=$(median ${rates[ours]}); mp=$(median ${rates[prosody]}); me=$(median ${rates[ejabberd]})
    echo "median deliveries/s: ours $mo, prosody $mp, ejabberd $me; ours / prosody $(ratio "$mo" "$mp")x, ours / ejabberd $(ratio "$mo" "$me")x"
fi

want idle || exit 0
# Memory per idle session on freshly started servers (the load rounds above
# leave freed memory in the allocators, which new sessions would reuse).
stop_pid "$PROSODY_PID"; stop_ejabberd; stop_pid "$OURS_PID"
start_prosody; start_ejabberd; start_ours
for s in prosody ejabberd ours; do
    case $s in
        prosody) port=$PP; dom=prosody.bench; pid=$PROSODY_PID ;;
        ejabberd) port=$EP; dom=ejabberd.bench; pid=$(ejabberd_vm_pid) ;;
        ours) port=$OP; dom=ours.bench; pid=$OURS_PID ;;
    esac
    # bench idle reads the server process's VmRSS (setpriv execs prosody in place).
    echo "idle $s: $($B bench idle --server "127.0.0.1:$port" --domain $dom --sessions "$IDLE" --register --pid "$pid" 2>&1 | tail -1)"
done
