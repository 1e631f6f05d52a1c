#!/bin/sh
# Cross-compiles tests/test_q35_neon.c with the AArch64 NEON kernels and runs
# it under qemu-aarch64: once for baseline armv8-a (widening multiplies) and
# once for armv8.2-a+dotprod (SDOT). Exits non-zero if a build or a test
# fails. Installs nothing; on Debian/Ubuntu the tools come from
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
# (gcc-aarch64-linux-gnu brings libgomp1-arm64-cross for -fopenmp).
# Environment: CROSS_CC (aarch64-linux-gnu-gcc), QEMU (qemu-aarch64),
# QEMU_LD_PREFIX (/usr/aarch64-linux-gnu), NEON_BUILD (build/neon).
set -eu
cd "$(dirname "$0")/.."

CROSS_CC=${CROSS_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU:-qemu-aarch64}
SYSROOT=${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}
OUT=${NEON_BUILD:-build/neon}

missing=""
command -v "$CROSS_CC" >/dev/null 2>&1 || missing="$missing gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
command -v "$QEMU" >/dev/null 2>&1 || missing="$missing qemu-user"
if [ -n "$missing" ]; then
    echo "neon-test: missing tools; install them with: apt-get install$missing" >&2
    exit 2
fi
if [ ! -d "$SYSROOT" ]; then
    echo "neon-test: no AArch64 libraries at $SYSROOT (apt-get install libc6-dev-arm64-cross)" >&2
    exit 2
fi

CFLAGS="-std=c11 -Wall -Wextra -Werror -O2 -fopenmp -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc"
SRC="tests/test_q35_neon.c src/format/q35fmt.c src/format/q35r16.c src/format/dtype.c src/format/kquant.c src/format/q35quant.c src/kernels/q35dot_ref.c
     src/kernels/ref.c src/kernels/neon.c $(ls src/core/*.c)"
mkdir -p "$OUT"

status=0
for variant in armv8-a armv8.2-a+dotprod; do
    exe="$OUT/test_q35_neon-$(echo "$variant" | tr '.+' '__')"
    echo "== $variant: $CROSS_CC -march=$variant"
    # shellcheck disable=SC2086 # word splitting of CFLAGS and SRC is intended
    if ! "$CROSS_CC" $CFLAGS -march="$variant" -o "$exe" $SRC -lm; then
        echo "neon-test: build for $variant failed" >&2
        status=1
        continue
    fi
    # qemu's default CPU ("max") has the dot-product extension; the baseline
    # build simply does not use it
    if ! "$QEMU" -L "$SYSROOT" "$exe"; then
        echo "neon-test: $variant failed" >&2
        status=1
    fi
done
exit $status
