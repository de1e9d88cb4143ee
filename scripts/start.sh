#!/usr/bin/env bash
# The main job: get everything ready, start a 3-node cluster on loopback (nats-server and three
# fleetd processes, data under .hyperfleet/) and run a guest on it; Ctrl-C stops the cluster.
# With arguments, they are passed to `hyperfleet` instead (e.g. npm start -- run guests/build/hello.elf).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
hyperfleet() { node services/cli/dist/main.js "$@"; }
if [ $# -gt 0 ]; then
  hyperfleet "$@"
  exit
fi
DIR=.hyperfleet
rm -f "$DIR/cluster.json"
hyperfleet up --nodes 3 --dir "$DIR" &
UP=$!
trap 'kill -INT $UP 2>/dev/null; wait $UP' INT TERM
for _ in $(seq 1 300); do
  [ -f "$DIR/cluster.json" ] && break
  kill -0 $UP 2>/dev/null || { echo "the cluster did not start; logs in $DIR/" >&2; exit 1; }
  sleep 0.1
done
[ -f "$DIR/cluster.json" ] || { echo "the cluster did not start within 30 s; logs in $DIR/" >&2; exit 1; }
# The cluster keeps its state in $DIR across runs: the demo VM is created the first time only.
if ! hyperfleet vm show demo --dir "$DIR" > /dev/null 2>&1; then
  if ! hyperfleet vm create demo --memory 64M --image dirtier --bootargs "rate=2000 ws=8" --dir "$DIR"; then
    kill -INT $UP; wait $UP || true
    exit 1
  fi
fi
sleep 1
hyperfleet vm list --dir "$DIR"
cat <<TXT

A guest (the dirtier: 2,000 pages/s over 8 MiB, a heartbeat a second) runs on the cluster. In another
terminal, from this directory:
  node services/cli/dist/main.js vm migrate demo          # live-migrate it to another node
  node services/cli/dist/main.js vm console demo          # its console (Ctrl-] detaches)
  node services/cli/dist/main.js vm list | node list | cluster status
Ctrl-C here stops the cluster.
TXT
wait $UP
