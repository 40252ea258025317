#!/usr/bin/env bash
# A multi-host sweep on one machine: N network namespaces act as hosts. The coordinator runs in
# one ("sw-coord", 10.88.0.1), each worker in its own ("sw-wK", 10.88.K.2) joined to the
# coordinator's namespace by a veth pair — the topology of tests/tests/partition.rs. It runs a
# sweep, prints the leaderboard and the coordinator's /metrics summary, and cleans up.
#
#   cargo build --release -p coordinator -p worker
#   sudo deploy/netns-demo.sh [WORKERS] [CONFIG]      # default: 2 workers, examples/quickstart.yaml
#
# Needs root (or CAP_NET_ADMIN) and iproute2.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERS=${1:-2}
CONFIG=${2:-examples/quickstart.yaml}
BIN=${BIN:-target/release}
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
TMP=$(mktemp -d)
PORT=50051
C=sw-coord

for b in coordinator worker; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: run cargo build --release -p coordinator -p worker" >&2; exit 2; }
done
command -v ip >/dev/null || { echo "needs iproute2 (ip)" >&2; exit 2; }

cleanup() {
  set +e
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  ip netns del "$C" 2>/dev/null
  for k in $(seq 1 "$WORKERS"); do ip netns del "sw-w$k" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

echo "== hosts: $C and $WORKERS workers"
ip netns add "$C"
ip -n "$C" link set lo up
for k in $(seq 1 "$WORKERS"); do
  ip netns add "sw-w$k"
  ip -n "sw-w$k" link set lo up
  ip link add "swc$k" netns "$C" type veth peer name "sww$k" netns "sw-w$k"
  ip -n "$C" addr add "10.88.$k.1/24" dev "swc$k"
  ip -n "sw-w$k" addr add "10.88.$k.2/24" dev "sww$k"
  ip -n "$C" link set "swc$k" up
  ip -n "sw-w$k" link set "sww$k" up
done

echo "== coordinator in $C (token set, metrics on 127.0.0.1:9464 inside it)"
SWEEP_TOKEN=$TOKEN ip netns exec "$C" "$BIN/coordinator" serve --listen "0.0.0.0:$PORT" \
  --store "$TMP/sweeps.db" --metrics-listen 127.0.0.1:9464 2>"$TMP/coordinator.log" &
client() { SWEEP_TOKEN=$TOKEN ip netns exec "$C" "$BIN/coordinator" "$@" --coordinator "http://127.0.0.1:$PORT"; }
for _ in $(seq 1 50); do client status >/dev/null 2>&1 && break; sleep 0.2; done

for k in $(seq 1 "$WORKERS"); do
  echo "== worker $k in sw-w$k -> http://10.88.$k.1:$PORT"
  SWEEP_TOKEN=$TOKEN ip netns exec "sw-w$k" "$BIN/worker" --coordinator "http://10.88.$k.1:$PORT" \
    --slots 1 2>"$TMP/worker$k.log" &
done

ID=$(client submit "$CONFIG")
echo "== sweep $ID from $CONFIG"
client watch "$ID"
client leaderboard "$ID"
echo "== who trained what"
client leaderboard "$ID" --json | python3 -c 'import json, sys
for t in json.load(sys.stdin)["trials"]:
    print("  trial %s: worker %s" % (t["trial"], t["worker"]))' || true
echo "== coordinator metrics"
ip netns exec "$C" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9464; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' \
  | grep -E '^sweep_(leases_granted_total|trials\{|workers_connected|rpc_calls_total)' || true
