#!/usr/bin/env bash
# Makes this checkout ready to run: Debian packages (through apt-get when missing and running as root),
# pnpm at the pinned version, npm packages from the lockfile, the TypeScript build and the guest programs.
# Safe to run again: it only does what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=$(node -p 'require("./package.json").packageManager.split("@")[1]')
# The RISC-V cross compiler and C library for guests, NATS for migration and cluster traffic,
# QEMU as the peer we compare guests and speed against, Prometheus (and its promtool) for
# `hyperfleet up --prometheus` and the metrics tests, docker-compose to check docker-compose.yml.
APT_PACKAGES=(gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf nats-server qemu-system-misc prometheus docker-compose)

say() { printf 'setup: %s\n' "$*" >&2; }

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  say "Node.js 20 or newer is needed (found $(node --version))"
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "missing Debian packages: ${missing[*]}"
    say "install them with: sudo apt-get install ${missing[*]}"
    exit 1
  fi
fi

# pnpm, pinned: a global install when we may, else a private copy under .tools/.
PNPM=pnpm
if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    say "installing pnpm $PNPM_VERSION"
    npm install -g -E --silent "pnpm@$PNPM_VERSION" >/dev/null 2>&1
  else
    PNPM="$PWD/.tools/node_modules/.bin/pnpm"
    if [ "$("$PNPM" --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
      say "installing pnpm $PNPM_VERSION under .tools/"
      npm install --silent --prefix .tools -E "pnpm@$PNPM_VERSION" >/dev/null
    fi
  fi
fi

"$PNPM" install --frozen-lockfile --reporter=silent
"$PNPM" exec tsc -b
make -s -C guests
