#!/usr/bin/env bash
# Builds cpp/tests/kat.cpp natively (x86-64: every path this CPU has) and for aarch64 (static,
# with Debian's g++-aarch64-linux-gnu), and runs the aarch64 build under qemu-aarch64: with the
# Crypto Extensions (-cpu max and -cpu cortex-a53: paths none/portable and armv8/neon) and
# without them (HWCAP_AES and HWCAP_PMULL hidden, as qemu has no CPU model without them: AES
# path none only, the vector kernels on portable and neon). Exits non-zero on any wrong answer,
# a missing tool or a path that did not run. Then ct_check.cpp under valgrind's memcheck: no
# branch or address of the portable AES, GHASH, CSPRNG, masks or GF(2^128) may depend on a
# secret (a table AES fails it). Run from anywhere.
# Environment: CXX (native, default g++), AARCH64_CXX (default aarch64-linux-gnu-g++),
# QEMU_AARCH64 (default qemu-aarch64), VALGRIND (default valgrind), KAT_BUILD (output directory,
# default a fresh temp dir), KAT_OPT (optimisation flag, default -O3).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${KAT_BUILD:-$(mktemp -d)}"
mkdir -p "$out"
cxx="${CXX:-g++}"
a64_cxx="${AARCH64_CXX:-aarch64-linux-gnu-g++}"
qemu="${QEMU_AARCH64:-qemu-aarch64}"
valgrind="${VALGRIND:-valgrind}"
for tool in "$cxx" "$a64_cxx" "$qemu" "$valgrind"; do
    command -v "$tool" >/dev/null || { echo "run_kat.sh: $tool not found" >&2; exit 2; }
done

# The flags of setup.py that change results (no FMA contraction, no errno) and its -O3, which
# pip builds on every device and under which GCC vectorises the plain loops of the reduce and
# ddg kernels (-O2 leaves most of them scalar); each kernel file sets its own ISA flags.
flags=(-std=c++17 "${KAT_OPT:--O3}" -fno-strict-aliasing -ffp-contract=off -fno-math-errno
       -I"$root/cpp/include" -I"$root/cpp/src")
sources=("$root"/cpp/src/*.cpp "$root/cpp/tests/kat.cpp")

echo "== build: native ($("$cxx" -dumpmachine)) and aarch64, in parallel"
"$cxx" "${flags[@]}" "${sources[@]}" -o "$out/kat_native" -lpthread &
native=$!
# --wrap=getauxval lets PRIVCITY_KAT_NO_CRYPTO hide the Crypto Extensions from the core.
"$a64_cxx" -static "${flags[@]}" -Wl,--wrap=getauxval "${sources[@]}" -o "$out/kat_aarch64" \
    -lpthread &
cross=$!
# The constant-time check at setup.py's -O3, with the secrets' origins in the report.
"$cxx" "${flags[@]/-O2/-O3}" -g "$root"/cpp/src/*.cpp "$root/cpp/tests/ct_check.cpp" \
    -o "$out/ct_check" -lpthread &
ct=$!
wait "$native"
wait "$cross"
wait "$ct"

status=0
run() {
    local name="$1"
    shift
    echo "== $name"
    if ! "$@"; then
        echo "run_kat.sh: $name FAILED" >&2
        status=1
    fi
}
run "native: every path this CPU has" "$out/kat_native"
run "aarch64 under qemu -cpu max (Crypto Extensions)" \
    "$qemu" -cpu max "$out/kat_aarch64" --expect-paths "none/portable armv8/neon"
run "aarch64 under qemu -cpu cortex-a53 (Crypto Extensions)" \
    "$qemu" -cpu cortex-a53 "$out/kat_aarch64" --expect-paths "none/portable armv8/neon"
run "aarch64 under qemu without the Crypto Extensions (HWCAP_AES/PMULL hidden)" \
    env PRIVCITY_KAT_NO_CRYPTO=1 "$qemu" -cpu max "$out/kat_aarch64" \
    --expect-paths "none/portable none/neon"
run "constant time: the portable path under valgrind memcheck (secrets undefined)" \
    "$valgrind" -q --error-exitcode=1 --track-origins=yes "$out/ct_check"
exit "$status"
