#!/bin/bash
# bench-mpi.sh — q35-mpi's targets (issue 18, docs/mpi.md), on one machine:
#   decode  tok/s of q35-mpi with 2 ranks x 1 thread vs q35 with 1 thread
#           (q35 bench -p 0 -n NTG: generation after a 1-token warm-up);
#   ppl     perplexity throughput (tokens/s scored, DOCS documents of at most
#           CTX tokens in flight) with 2 ranks x 1 thread vs 1 process, 1 thread;
#   msg     the per-token cost of the pipeline on a tiny model (stories3M at
#           Q3_5, where a token's compute is small): 1/tg(2 ranks) - 1/tg(1);
#   RSS     every rank's peak RSS next to its share (q35-mpi bench's last line).
# The sides alternate within each round, so that other work on a shared
# machine hits both alike; the summary gives the median and the range.
# Every process runs in a session of its own (setsid): with the kernel's
# autogroup scheduling a session shares one CPU share on a loaded machine,
# so 2 ranks of one session would get the CPU time of one process where 2
# machines (or cores) would give each its own.
#   scripts/bench-mpi.sh [ROUNDS]      (needs `make` and `make mpi`)
# Environment: M7 (decode model), MP (perplexity model), TEXT, NTG, DOCS, CTX, REPS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
M7=${M7:-/work/models/llama2-7b-q35.gguf}
MP=${MP:-/work/models/tinyllama-q35.gguf}
TEXT=${TEXT:-../shared/data/tinystories-dev.txt}
NTG=${NTG:-16} REPS=${REPS:-3} DOCS=${DOCS:-16} CTX=${CTX:-64}
MPIRUN=(mpirun -q --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
ONE=(setsid -w ./q35)
MPI=("${MPIRUN[@]}" -np 2 setsid -w ./q35-mpi)
out=$(mktemp -d)
tiny="$out/stories3M-q35.gguf"
./q35 quantize ../shared/models/stories3M/stories3M-q80.bin "$tiny" --type Q3_5 >/dev/null 2>&1

# the t/s column of bench's tgN row
tg() { grep -E "\| tg[0-9]+ \|" | sed -E 's/.*\| ([0-9.]+) ± [0-9.]+ \|.*/\1/' | tail -n 1; }
# perplexity's "S s, T tokens/s with N threads"
pt() { grep -E "tokens/s with" | sed -E 's/.*, ([0-9.]+) tokens\/s.*/\1/' | tail -n 1; }

for r in $(seq "$ROUNDS"); do
    "${ONE[@]}" bench -m "$tiny" -p 0 -n 256 -t 1 -r 5 | tg >>"$out/msg1"
    "${MPI[@]}" bench -m "$tiny" -p 0 -n 256 -t 1 -r 5 | tg >>"$out/msg2"
    "${ONE[@]}" bench -m "$M7" -p 0 -n "$NTG" -t 1 -r "$REPS" | tee -a "$out/dec1.txt" | tg >>"$out/dec1"
    "${MPI[@]}" bench -m "$M7" -p 0 -n "$NTG" -t 1 -r "$REPS" | tee -a "$out/dec2.txt" | tg >>"$out/dec2"
    "${ONE[@]}" perplexity -m "$MP" -f "$TEXT" --chunks "$DOCS" --ctx "$CTX" -t 1 2>&1 | pt >>"$out/ppl1"
    "${MPI[@]}" perplexity -m "$MP" -f "$TEXT" --chunks "$DOCS" --ctx "$CTX" -t 1 2>&1 | pt >>"$out/ppl2"
    echo "round $r ($(uptime | sed 's/.*load/load/')): decode $(tail -n 1 "$out/dec1") vs $(tail -n 1 "$out/dec2") tok/s," \
         "perplexity $(tail -n 1 "$out/ppl1") vs $(tail -n 1 "$out/ppl2") tok/s," \
         "stories3M tg $(tail -n 1 "$out/msg1") vs $(tail -n 1 "$out/msg2") tok/s"
done

# median, min, max of a file of numbers
stats() { sort -g "$1" | awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
                                               printf "%.3f (%.3f .. %.3f)", m, v[1], v[NR]}'; }
med() { sort -g "$1" | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo
echo "| measure | 1 process, 1 thread | 2 ranks x 1 thread | ratio (medians) |"
echo "| --- | ---: | ---: | ---: |"
echo "| decode, $(basename "$M7"), tg$NTG tok/s | $(stats "$out/dec1") | $(stats "$out/dec2") |" \
     "$(awk -v a="$(med "$out/dec1")" -v b="$(med "$out/dec2")" 'BEGIN {printf "%.3f", b / a}') |"
echo "| perplexity, $(basename "$MP"), $DOCS docs x <= $CTX tokens, tok/s | $(stats "$out/ppl1") | $(stats "$out/ppl2") |" \
     "$(awk -v a="$(med "$out/ppl1")" -v b="$(med "$out/ppl2")" 'BEGIN {printf "%.3f", b / a}') |"
echo "| decode, stories3M Q3_5, tg256 tok/s | $(stats "$out/msg1") | $(stats "$out/msg2") |" \
     "$(awk -v a="$(med "$out/msg1")" -v b="$(med "$out/msg2")" 'BEGIN {printf "%.3f", b / a}') |"
awk -v a="$(med "$out/msg1")" -v b="$(med "$out/msg2")" \
    'BEGIN {printf "pipeline cost per token (stories3M, medians): %.1f us\n", (1 / b - 1 / a) * 1e6}'
echo
echo "peak RSS, one process:  $(grep 'peak RSS' "$out/dec1.txt" | tail -n 1)"
echo "peak RSS, 2 ranks:      $(grep 'peak RSS' "$out/dec2.txt" | tail -n 1)"
rm -rf "$out"
