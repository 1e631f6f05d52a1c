#!/bin/sh
# proofs/prove.sh — runs every Frama-C WP proof of q35 (`make prove`,
# docs/PROOFS.md). Needs the Debian packages frama-c-base, why3, z3 and
# cvc4. Prints "N goals proved / M total" per proof and overall, and
# exits non-zero if any goal is left unproved. Logs: build/proofs/*.log.
set -u
OUT=${PROVE_OUT:-build/proofs}
mkdir -p "$OUT"

for tool in frama-c why3 z3 cvc4; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "prove: $tool not found (apt-get install frama-c-base why3 z3 cvc4)" >&2
        exit 2
    }
done

# A private Why3 configuration listing the installed provers.
export WHY3CONFIG="$OUT/why3.conf"
if ! [ -s "$WHY3CONFIG" ]; then
    why3 config detect >"$OUT/why3-detect.log" 2>&1 || {
        cat "$OUT/why3-detect.log" >&2
        exit 2
    }
    sed -i 's/^memlimit = .*/memlimit = 2000/' "$WHY3CONFIG"
fi

CPP="-cpp-extra-args=-Iinclude -cpp-extra-args=-Isrc"
CPP="$CPP -cpp-extra-args=-D_POSIX_C_SOURCE=200809L"
WP="-wp -wp-prover z3,cvc4 -wp-par 2 -wp-timeout 10"

total=0
proved=0
failed=""

# run NAME frama-c-arguments...
run() {
    name=$1
    shift
    log="$OUT/$name.log"
    # shellcheck disable=SC2086
    frama-c $CPP "$@" >"$log" 2>&1
    line=$(grep 'Proved goals:' "$log" | tail -n 1)
    n=$(echo "$line" | sed -n 's/.*Proved goals: *\([0-9]*\) *\/ *\([0-9]*\).*/\1/p')
    m=$(echo "$line" | sed -n 's/.*Proved goals: *\([0-9]*\) *\/ *\([0-9]*\).*/\2/p')
    if [ -z "$n" ] || [ -z "$m" ]; then
        echo "$name: no result (see $log)"
        tail -n 20 "$log"
        failed="$failed $name"
        return
    fi
    echo "$name: $n goals proved / $m total"
    total=$((total + m))
    proved=$((proved + n))
    if [ "$n" != "$m" ] || [ "$m" = 0 ]; then
        grep -A3 '\[Failed\]\|Timeout\|Unknown' "$log" | head -n 40
        failed="$failed $name"
    fi
}

LEMMAS=proofs/bits_lemmas.c
NOLEMMAS=-wp-prop=-@lemma

# 1. dot product: exact sum, no int32 overflow for K <= 66311
run q35_dot_codes_i8 src/kernels/q35dot_ref.c $WP -wp-rte -wp-fct q35_dot_codes_i8
run q35_block_combine src/kernels/q35dot_ref.c $WP -wp-rte -wp-fct q35_block_combine
# 2. layout: bit lemmas (by exhaustive enumeration: Range tactic + Qed),
#    then the primitives and the real packing / unpacking code
run bits_lemmas $LEMMAS $WP -wp-timeout 2 -wp-auto wp:range
run q35_bits_get $LEMMAS src/format/q35fmt.c $WP $NOLEMMAS -wp-rte -wp-fct q35_bits_get
run q35_bits_put $LEMMAS src/format/q35fmt.c $WP $NOLEMMAS -wp-rte -wp-fct q35_bits_put
run low_slot $LEMMAS src/format/q35fmt.c $WP $NOLEMMAS -wp-rte -wp-fct low_slot
run code_at $LEMMAS src/format/q35fmt.c $WP $NOLEMMAS -wp-rte -wp-fct code_at
run q35_pack_row $LEMMAS src/format/q35fmt.c $WP $NOLEMMAS -wp-rte -wp-fct q35_pack_row
run q35_unpack_row $LEMMAS src/format/q35fmt.c $WP $NOLEMMAS -wp-rte -wp-fct q35_unpack_row
# 3. quantizer rounding, real-number model, assuming lrintf's contract
run q35_nearest_code $LEMMAS proofs/libm_spec.c proofs/nearest_main.c -warn-special-float none \
    $WP $NOLEMMAS -wp-model Typed+real -wp-rte -wp-fct q35_nearest_code

echo "all proofs: $proved goals proved / $total total"
if [ -n "$failed" ]; then
    echo "prove: unproved goals in:$failed" >&2
    exit 1
fi
