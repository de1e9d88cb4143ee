#!/usr/bin/env bash
# The main job: get everything ready, then boot guests with their consoles on this terminal.
# With arguments, they are passed to `hyperfleet` instead (e.g. npm start -- run guests/build/hello.elf).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
hyperfleet() { node services/cli/dist/main.js "$@"; }
if [ $# -gt 0 ]; then
  hyperfleet "$@"
  exit
fi
echo "== hyperfleet run guests/build/hello.elf"
hyperfleet run guests/build/hello.elf --append "console=uart"
echo "== hyperfleet run guests/build/dirtier.elf (5 s, dirtying 5,000 pages/s over 16 MiB)"
hyperfleet run guests/build/dirtier.elf --append "rate=5000 ws=16 seconds=5" --stats
