#!/bin/bash
# tg_rounds.sh — q35's tg against llama.cpp's in interleaved rounds, for a
# ratio that one reading of each (the table's) cannot give on a machine
# whose bandwidth drifts by a third within minutes. Each round runs
# `q35 bench -p 0 -n N -t THREADS -r 2` on the q35 file, then `llama-bench` with
# the same flags on each llama.cpp file; it prints every round's tok/s and
# q35's ratio to the fastest llama.cpp file of that round, then the
# ratios' median.
#
#   bench/tg_rounds.sh ROUNDS THREADS Q35_FILE LLAMA_FILE...
#
# Environment: Q35 (build/q35), LLAMA_BENCH
# (/work/llama.cpp-build/bin/llama-bench), N (32), PIN (at THREADS 1, the
# CPU both engines run on, default the last one, as in speed2_table.sh:
# this machine's two cores are not alike).
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: tg_rounds.sh ROUNDS THREADS Q35_FILE LLAMA_FILE..." >&2; exit 2; }
rounds=$1 threads=$2 q35file=$3
shift 3
Q35=${Q35:-build/q35}
LLAMA_BENCH=${LLAMA_BENCH:-/work/llama.cpp-build/bin/llama-bench}
N=${N:-32}
PIN=${PIN:-$(($(nproc) - 1))}
for f in "$Q35" "$LLAMA_BENCH"; do
    [ -x "$f" ] || { echo "tg_rounds.sh: $f is not an executable" >&2; exit 1; }
done
for f in "$q35file" "$@"; do
    [ -f "$f" ] || { echo "tg_rounds.sh: $f is missing" >&2; exit 1; }
done
case $rounds$threads in *[!0-9]*) echo "tg_rounds.sh: ROUNDS and THREADS must be numbers" >&2; exit 2 ;; esac
if [ "$rounds" -lt 1 ] || [ "$threads" -lt 1 ]; then
    echo "tg_rounds.sh: ROUNDS and THREADS must be at least 1" >&2
    exit 2
fi

# the tok/s column of a markdown table's first tg row (both programs print
# one); reads to the end, so the program never writes into a closed pipe
tg() { awk -F'|' '!done && /\| *tg[0-9]/ { split($(NF - 1), v, " "); print v[1]; done = 1 }'; }

# CMD... with THREADS threads; pinned to CPU PIN at one thread
run() { if [ "$threads" -eq 1 ]; then taskset -c "$PIN" "$@" -t 1; else "$@" -t "$threads"; fi; }

ratios=()
echo "round  q35 $(basename "$q35file")  $(for f in "$@"; do printf '%s  ' "$(basename "$f")"; done) ratio"
for ((r = 1; r <= rounds; r++)); do
    a=$(run "$Q35" bench -m "$q35file" -p 0 -n "$N" -r 2 | tg) || true
    [ -n "$a" ] || { echo "tg_rounds.sh: q35 bench printed no tg row" >&2; exit 1; }
    line="$r  $a" best=0
    for f in "$@"; do
        b=$(run "$LLAMA_BENCH" -m "$f" -p 0 -n "$N" -r 2 2>/dev/null | tg) || true
        [ -n "$b" ] || { echo "tg_rounds.sh: llama-bench printed no tg row for $f" >&2; exit 1; }
        line="$line  $b"
        best=$(awk -v a="$best" -v b="$b" 'BEGIN { print (b > a ? b : a) }')
    done
    x=$(awk -v a="$a" -v b="$best" 'BEGIN { printf "%.3f", a / b }')
    ratios+=("$x")
    echo "$line  $x"
done
printf '%s\n' "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 } END {
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "q35 against the fastest llama.cpp file of each round: median %.3f (%.3f-%.3f, %d rounds)\n", m, v[1], v[NR], NR }'
