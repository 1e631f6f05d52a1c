#!/bin/bash
# speed2_table.sh — issue 19's table in one run: q35's Q3_5, Q4_5, Q2_5
# beside llama.cpp's Q4_0, Q4_K and Q3_K_S, on the synthetic tinyllama-1.1b
# and llama2-7b shapes, at depth 0 and 4096, at 1 and 2 threads. Prints
# llama-bench's and q35 bench's markdown tables section by section; each
# section starts with build/bench/cpu_scaling's reading (what a second
# thread adds on this machine right now), after waiting up to WAIT seconds
# for it to reach 1.8x, so a section run while the host starves one core
# says so.
#
#   bench/speed2_table.sh DIR [SECTIONS]
#
# DIR holds SHAPE-{Q3_5,Q4_5,Q2_5}.gguf (q35 synth --shape SHAPE --type T
# --ctx 8192) and SHAPE-{Q4_0,Q4_K_M,Q3_K_S}.gguf (llama-quantize --pure
# SHAPE-F16.gguf OUT T) for SHAPE tinyllama-1.1b and llama2-7b. SECTIONS:
# any of "tiny0 tiny4096 7b0 7b4096" (default all, in that order; about an
# hour on 2 cores). Environment: Q35 (build/q35), LLAMA_BENCH
# (/work/llama.cpp-build/bin/llama-bench), SCALING
# (build/bench/cpu_scaling), WAIT (600), PIN (the CPU of the one-thread
# tests, default the last one). The one-thread tests of both engines run
# pinned to that one CPU (taskset): the two cores of the development
# machine are not alike (pp512 at 1 thread, both engines about a fifth
# slower on core 0; docs/bench-speed2.md), and an unpinned test lands on
# either. The two-thread tests run unpinned.
set -euo pipefail
dir=${1:?usage: speed2_table.sh DIR [SECTIONS]}
sections=${2:-tiny0 tiny4096 7b0 7b4096}
Q35=${Q35:-build/q35}
LLAMA_BENCH=${LLAMA_BENCH:-/work/llama.cpp-build/bin/llama-bench}
SCALING=${SCALING:-build/bench/cpu_scaling}
WAIT=${WAIT:-600}
PIN=${PIN:-$(($(nproc) - 1))}
command -v taskset >/dev/null || { echo "speed2_table.sh: taskset (util-linux) is missing" >&2; exit 1; }
for f in "$Q35" "$LLAMA_BENCH" "$SCALING"; do
    [ -x "$f" ] || { echo "speed2_table.sh: $f is not an executable" >&2; exit 1; }
done

# the vpdpbusd ratio of 2 threads to 1 (cpu_scaling's first line)
scaling() { "$SCALING" 2 | awk '/vpdpbusd/ { for (i = 1; i <= NF; i++) if ($i ~ /x$/) { sub(/x$/, "", $i); print $i; exit } }'; }

# waits (up to WAIT s) for a second thread to add >= 1.8x, then says what it read
wait_cores() {
    local start=$SECONDS s
    while :; do
        s=$(scaling)
        if awk -v s="$s" 'BEGIN { exit !(s >= 1.8) }' || [ $((SECONDS - start)) -ge "$WAIT" ]; then break; fi
        sleep 20
    done
    echo "cpu_scaling: ${s}x ($(date -u +%H:%M:%S))"
}

# CMD... at 1 thread pinned to CPU PIN, then at 2 threads unpinned
at_1_then_2() { taskset -c "$PIN" "$@" -t 1 && "$@" -t 2; }

section() { # NAME SHAPE FLAGS (both engines'; each test at 1 thread, pinned, then at 2)
    local name=$1 shape=$2 flags
    read -ra flags <<<"$3"
    echo "## $name"
    wait_cores
    for t in Q4_0 Q4_K_M Q3_K_S; do
        f=$dir/$shape-$t.gguf
        [ -f "$f" ] || { echo "speed2_table.sh: $f is missing" >&2; exit 1; }
        at_1_then_2 "$LLAMA_BENCH" -m "$f" "${flags[@]}" 2>/dev/null | grep '^|'
    done
    for t in Q3_5 Q4_5 Q2_5; do
        f=$dir/$shape-$t.gguf
        [ -f "$f" ] || { echo "speed2_table.sh: $f is missing" >&2; exit 1; }
        at_1_then_2 "$Q35" bench -m "$f" "${flags[@]}" --roofline
    done
    echo "cpu_scaling at the end: $(scaling)x"
}

echo "q35 $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%F %H:%M') UTC; one-thread tests on CPU $PIN"
for s in $sections; do
    case $s in
    tiny0) section "tinyllama-1.1b, depth 0" tinyllama-1.1b "-p 64,512 -n 32 -r 3" ;;
    tiny4096) section "tinyllama-1.1b, depth 4096" tinyllama-1.1b "-p 512 -n 32 -d 4096 -r 2" ;;
    7b0) section "llama2-7b, depth 0" llama2-7b "-p 64 -n 32 -r 2" ;;
    7b4096) section "llama2-7b, depth 4096" llama2-7b "-p 0 -n 32 -d 4096 -r 1" ;;
    *) echo "speed2_table.sh: unknown section '$s' (tiny0, tiny4096, 7b0, 7b4096)" >&2; exit 1 ;;
    esac
done
echo "done $(date -u +%H:%M:%S)"
