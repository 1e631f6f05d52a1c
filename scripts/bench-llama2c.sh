#!/bin/bash
# Decode speed of q35 against karpathy's llama2.c run.c on the same models,
# same machine, same run: greedy from "Once upon a time" over the whole
# context (both stop early at BOS, at the same token), 1 and 2 threads,
# median of R interleaved runs (default 5). Each program's own figure:
# run.c's counts every position after the first, q35's generated tokens. run.c reads only legacy fp32 files, so stories3M
# (an int8 export) is first written as fp32 by build/bench/export_legacy.
#   scripts/bench-llama2c.sh PATH/TO/llama2.c [R]
# run.c is built there as `run_omp` with its Makefile's runomp flags
# (-Ofast -fopenmp -march=native). Nothing from llama2.c enters this repo.
set -euo pipefail
L2C=${1:?usage: $0 PATH/TO/llama2.c [R]}
R=${2:-5}
cd "$(dirname "$0")/.."
SHARED=${Q35_SHARED:-../shared}
make -s build/q35 build/bench/export_legacy
[ -x "$L2C/run_omp" ] || (cd "$L2C" && gcc -Ofast -fopenmp -march=native run.c -lm -o run_omp)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
build/bench/export_legacy "$SHARED/models/stories3M/stories3M-q80.bin" "$tmp/stories3M-f32.bin"
cp "$SHARED/models/stories3M/tok4096.bin" "$tmp/"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| model | threads | q35 tok/s | run.c tok/s | q35 / run.c |"
echo "|---|---|---:|---:|---:|"
for spec in "stories260K:$SHARED/models/stories260K/stories260K.bin:$SHARED/models/stories260K/tok512.bin:512" \
            "babyllama105:$SHARED/models/babyllama105/model5000.bin:$SHARED/models/babyllama105/tok105.bin:256" \
            "stories3M:$tmp/stories3M-f32.bin:$tmp/tok4096.bin:512"; do
    IFS=: read -r name model tok steps <<<"$spec"
    for t in 1 2; do
        : >"$tmp/q" ; : >"$tmp/c"
        for i in $(seq "$R"); do # interleaved, so drifts in machine load hit both
            build/q35 run -m "$model" --tokenizer "$tok" -p "Once upon a time" -n $((steps - 5)) --temp 0 -t "$t" 2>&1 >/dev/null |
                sed -E 's/.*generation: [0-9]+ tokens, ([0-9.]+) tokens.*/\1/' >>"$tmp/q"
            OMP_NUM_THREADS=$t "$L2C/run_omp" "$model" -z "$tok" -t 0 -n "$steps" -i "Once upon a time" 2>&1 |
                sed -n -E 's/.*achieved tok\/s: ([0-9.]+).*/\1/p' >>"$tmp/c"
        done
        q=$(median <"$tmp/q")
        c=$(median <"$tmp/c")
        printf '| %s | %d | %.0f | %.0f | %.2f |\n' "$name" "$t" "$q" "$c" "$(echo "$q / $c" | bc -l)"
    done
done
