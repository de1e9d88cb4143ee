#!/usr/bin/env bash
# The whole test suite: setup (installs what is missing, builds), lint, then every vitest project.
# Extra arguments go to vitest (e.g. npm test -- packages/riscv).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
PATH="$PWD/node_modules/.bin:$PATH"
status=0
eslint . || status=1
tsc -p tsconfig.check.json || status=1
mkdir -p .reports
vitest run "$@" || status=1
exit $status
