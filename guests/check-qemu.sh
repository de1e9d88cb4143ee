#!/usr/bin/env bash
# Runs every guest on QEMU (qemu-system-riscv32 -M virt -bios none) and
# compares its normalised console output and exit status with expected/.
#
#   guests/check-qemu.sh            check
#   guests/check-qemu.sh --update   rewrite expected/ from this QEMU
#
# Normalisation (the machine-dependent timing figures): a trailing
# " (...)" is removed from every line and "cpubench: ticks=" lines are
# dropped. Every case ends with "exit <status>" in its expected file.
#
# expected/sbi-hello-*.out are not checked here: sbi-hello is an S-mode
# kernel that needs SBI firmware (QEMU would need a 32-bit OpenSBI, which
# Debian does not ship); they are the reference for
# `hyperfleet run --sbi --smp N build/sbi-hello.elf`.
set -u
cd "$(dirname "$0")"

QEMU=${QEMU:-qemu-system-riscv32}
if ! command -v "$QEMU" >/dev/null 2>&1; then
    echo "check-qemu: $QEMU not found (Debian: apt-get install qemu-system-misc)" >&2
    exit 2
fi
make -s || exit 1

update=0
[ "${1:-}" = "--update" ] && update=1

# name | elf | boot arguments [| harts (-smp, default 1)]
CASES=(
    "hello|hello|"
    "hello-args|hello|a=1 b=two"
    "isa-alu|isa-alu|"
    "isa-branch|isa-branch|"
    "isa-mem|isa-mem|"
    "isa-muldiv|isa-muldiv|"
    "isa-amo|isa-amo|"
    "isa-csr|isa-csr|"
    "isa-trap|isa-trap|"
    "isa-misaligned|isa-misaligned|"
    "isa-sv32|isa-sv32|"
    "isa-irq|isa-irq|"
    "cpubench-1000|cpubench|iters=1000"
    "cpubench-0|cpubench|iters=0"
    "dirtier-paced|dirtier|rate=5000 ws=16 seconds=3"
    "dirtier-max|dirtier|rate=max ws=16 seconds=2"
    "dirtier-too-big|dirtier|ws=1000"
    "smp-counter-1|smp-counter||1"
    "smp-counter-2|smp-counter||2"
    "smp-counter-4|smp-counter||4"
)

normalise() {
    sed -e 's/\r$//' -e 's/ (.*)$//' | grep -v '^cpubench: ticks='
}

pass=0
fail=0
for c in "${CASES[@]}"; do
    IFS='|' read -r name elf args smp <<<"$c"
    if [ -n "$args" ]; then
        out=$(timeout 60 "$QEMU" -M virt -bios none -nographic -m 128M \
              -smp "${smp:-1}" -kernel "build/$elf.elf" -append "$args" \
              </dev/null 2>&1)
    else
        out=$(timeout 60 "$QEMU" -M virt -bios none -nographic -m 128M \
              -smp "${smp:-1}" -kernel "build/$elf.elf" </dev/null 2>&1)
    fi
    status=$?
    got=$(printf '%s\n' "$out" | normalise; echo "exit $status")
    if [ $update = 1 ]; then
        printf '%s\n' "$got" > "expected/$name.out"
        echo "updated expected/$name.out"
        continue
    fi
    if [ "$got" = "$(cat "expected/$name.out" 2>/dev/null)" ]; then
        echo "ok   $name"
        pass=$((pass + 1))
    else
        echo "FAIL $name"
        diff <(printf '%s\n' "$got") "expected/$name.out" | sed 's/^/     /'
        fail=$((fail + 1))
    fi
done
[ $update = 1 ] && exit 0
echo "check-qemu: $pass passed, $fail failed"
[ $fail = 0 ]
