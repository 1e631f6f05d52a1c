#!/bin/bash
# Quality per bit: quantizes MODEL to every Q3_5-family type, with and
# without an importance matrix from the calibration text, plus Q3_5 with a
# Q4_5 classifier, and GPTQ from the calibration text (--calib, with and
# without --bpw-budget); scores each on the dev text (perplexity, and KL
# divergence against MODEL's own log-probs); adds llama.cpp's Q8_0/Q4_0
# files of the same model as reference points; writes a markdown table and
# draws bits per weight against ΔPPL and against KLD with gnuplot.
#   scripts/pareto.sh [MODEL]      (what `make pareto MODEL=...` runs)
# Environment: Q35 (the program, default build/q35), OUT (work folder),
# NAME (default: MODEL's file name without -q80/-f32 and extension),
# CTX (default: the smallest context among MODEL and the reference files),
# CHUNKS (score only the first N dev documents: quicker, noisier), THREADS,
# Q35_SHARED, Q35_COMMIT (named in the table).
# Results: docs/pareto-NAME.md and docs/pareto-NAME.png.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "make pareto: $*" >&2; exit 1; }
command -v gnuplot >/dev/null || die "gnuplot not found (apt-get install -y gnuplot-nox)"
SHARED=${Q35_SHARED:-../shared}
Q35=${Q35:-build/q35}
model=${1:-$SHARED/models/stories3M/stories3M-q80.bin}
name=${NAME:-$(basename "$model" | sed -E 's/(-q80|-f32)?\.(bin|gguf)$//')}
dev=$SHARED/data/tinystories-dev.txt
calib=$SHARED/data/tinystories-calib.txt
threads=${THREADS:-$(nproc)}
out=${OUT:-/tmp/q35-pareto}/$name
chunks=()
[ -n "${CHUNKS:-}" ] && chunks=(--chunks "$CHUNKS")
[ -x "$Q35" ] || die "$Q35: no q35 program (make first)"
[ -r "$model" ] || die "$model: cannot read the model"
[ -r "$dev" ] && [ -r "$calib" ] || die "$dev or $calib missing"
mkdir -p "$out" docs
t_start=$(date +%s)
log() { echo "pareto: $* ($(( $(date +%s) - t_start )) s)" >&2; }

# llama.cpp's files of the same weights, if there are any
refs=()
for t in Q8_0 Q4_0; do
    f=$SHARED/models/gguf/$name-$t.gguf
    [ -r "$f" ] && refs+=("$t:$f")
done
context() {
    "$Q35" perplexity -m "$1" -f "$dev" --chunks 1 -t 1 2>"$out/context.log" | sed -n 's/^context: //p'
}
# one context for every point, so that all score the same tokens
ctx=${CTX:-}
if [ -z "$ctx" ]; then
    ctx=$(context "$model")
    [ -n "$ctx" ] || die "$model: $(tail -n 1 "$out/context.log")"
    for r in "${refs[@]}"; do
        c=$(context "${r#*:}")
        [ -n "$c" ] || die "${r#*:}: $(tail -n 1 "$out/context.log")"
        [ "$c" -lt "$ctx" ] && ctx=$c
    done
fi

# one thread: a single session on a small model only waits for its helpers
"$Q35" imatrix -m "$model" -f "$calib" -o "$out/imatrix.gguf" -t 1 >"$out/imatrix.log" 2>&1 ||
    die "imatrix failed: $(tail -n 1 "$out/imatrix.log")"
log "imatrix from $(basename "$calib")"
"$Q35" perplexity -m "$model" -f "$dev" "${chunks[@]}" --ctx "$ctx" -t "$threads" --kl-divergence-base "$out/base.kld" \
    >"$out/base.txt" 2>"$out/base.log" || die "base failed: $(tail -n 1 "$out/base.log")"
base_ppl=$(sed -n 's/^perplexity: //p' "$out/base.txt")
positions=$(sed -n 's/^tokens scored: //p' "$out/base.txt")
documents=$(sed -n 's/^documents: //p' "$out/base.txt")
log "base: perplexity $base_ppl over $positions positions"

: >"$out/rows.md"
for g in plain imatrix mixed gptq llama; do : >"$out/$g.dat"; done
# point GROUP LABEL TYPE IMATRIX MODELFILE: scores one file and records it
point() {
    local group=$1 label=$2 type=$3 im=$4 file=$5 r=$out/$2.txt
    "$Q35" perplexity -m "$file" -f "$dev" "${chunks[@]}" --ctx "$ctx" -t "$threads" --kl-divergence "$out/base.kld" \
        >"$r" 2>"$out/$label.log" || die "$label: $(tail -n 1 "$out/$label.log")"
    awk -v label="$label" -v type="$type" -v im="$im" -v group="$group" -v dat="$out/$group.dat" '
        /^2-D tensors:/ { bpw = $3; main = $7 " " $8; sub(/^\(/, "", main) }
        /^perplexity:/ { ppl = $2 }
        /^Mean PPL\(Q\)\/PPL\(base\):/ { ratio = $3; ratio_se = $5 }
        /^Mean PPL\(Q\)-PPL\(base\):/ { dppl = $3; dppl_se = $5 }
        /^Mean +KLD:/ { kld = $3; kld_se = $5 }
        /^99\.0% +KLD:/ { kld99 = $3 }
        /^Same top p:/ { same = $4; same_se = $6 }
        END {
            pct = 100 * (ratio - 1)
            printf "| %s | %s | %s | %s | %.4f | %.4f | %+.4f ± %.4f | %+.2f%% | %.5f ± %.5f | %.4f | %.2f ± %.2f |\n",
                   label, type, im, main, bpw, ppl, dppl, dppl_se, pct, kld, kld_se, kld99, same, same_se
            # log-scale axes: a change below 0.001% (or 1e-6 nats) is drawn at that floor
            y1 = pct > 0.001 ? pct : 0.001
            y2 = kld > 1e-6 ? kld : 1e-6
            printf "%.4f %.6f %.8f \"%s\"\n", bpw, y1, y2, type >> dat
        }' "$r" >>"$out/rows.md"
    log "$label: $(tail -n 1 "$out/rows.md")"
}

for im in no yes; do
    for t in Q2_5 Q3_5 Q4_5 Q8_S; do
        flag=()
        [ $im = yes ] && flag=(--imatrix "$out/imatrix.gguf")
        q=$out/$t-$im.gguf
        "$Q35" quantize "$model" "$q" --type $t "${flag[@]}" --threads "$threads" >"$out/quantize.log" 2>&1 ||
            die "quantize $t: $(tail -n 1 "$out/quantize.log")"
        point $([ $im = yes ] && echo imatrix || echo plain) "q35-$t$([ $im = yes ] && echo -imatrix)" $t $im "$q"
    done
done
"$Q35" quantize "$model" "$out/Q3_5-mixed.gguf" --type Q3_5 --output-tensor-type Q4_5 --imatrix "$out/imatrix.gguf" \
    --threads "$threads" >"$out/quantize.log" 2>&1 || die "quantize Q3_5 mixed: $(tail -n 1 "$out/quantize.log")"
point mixed q35-Q3_5-mixed "Q3_5 + Q4_5 classifier" yes "$out/Q3_5-mixed.gguf"
# GPTQ from the calibration text (quantize --calib, sequential, then tuned
# end to end), alone and with the per-tensor bit budget (--bpw-budget: all
# 2-D tensors within 3.75 / 2.75); for comparison the budget files without
# tuning (--tune-epochs 0) and with the one-run calibration (--calib-fast)
for spec in Q2_5::: Q3_5::: Q4_5::: Q3_5:3.75:: Q2_5:2.75:: Q3_5:3.75::notune Q2_5:2.75::notune \
    Q3_5:3.75:fast:notune; do
    IFS=: read -r t b fast notune <<<"$spec"
    flag=()
    [ -n "$b" ] && flag+=(--bpw-budget "$b")
    [ -n "$fast" ] && flag+=(--calib-fast)
    [ -n "$notune" ] && flag+=(--tune-epochs 0)
    variant=$fast${fast:+${notune:+-}}$notune  # "", fast, notune or fast-notune
    q=$out/$t-calib$b$variant.gguf
    s0=$(date +%s.%N)
    "$Q35" quantize "$model" "$q" --type $t --calib "$calib" "${flag[@]}" --threads "$threads" >"$out/quantize.log" 2>&1 ||
        die "quantize $t --calib: $(tail -n 1 "$out/quantize.log")"
    log "quantize $t --calib ${flag[*]}: $(echo "$(date +%s.%N) - $s0" | bc) s"
    point gptq "q35-$t-calib${variant:+-$variant}${b:+-budget$b}" "$t${b:+ (budget $b)}" "calib${variant:+ ($variant)}" "$q"
done
for r in "${refs[@]}"; do
    point llama "llama.cpp-${r%%:*}" "${r%%:*}" no "${r#*:}"
done

commit=${Q35_COMMIT:-$(git describe --always --dirty 2>/dev/null || echo unknown)}
table=docs/pareto-$name.md
{
    echo "# Quality per bit: $name"
    echo
    echo "Measured by \`make pareto\` (scripts/pareto.sh, q35 $commit): $(basename "$model") quantized by q35"
    echo "(imatrix from $(basename "$calib")) and llama.cpp's own files of the same weights, each scored on"
    echo "$(basename "$dev") ($documents documents, $positions positions) against the fp32 model's log-probs"
    echo "(\`q35 perplexity --kl-divergence\`, top-128 + tail: see docs/FORMAT.md). Every point, the base"
    echo "included, truncates documents at $ctx tokens, the smallest context any of the files declares, so all"
    echo "score the same tokens. fp32 perplexity: $base_ppl. bpw: bits per weight of the file's 2-D tensors"
    echo "(all of them; then its most common type alone). Uncertainties are one standard error."
    echo
    echo "| point | type | imatrix | main type, bpw | 2-D bpw | PPL | ΔPPL | ΔPPL % | mean KLD | 99% KLD | same top % |"
    echo "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    cat "$out/rows.md"
} >"$table.tmp"
mv "$table.tmp" "$table"

png=docs/pareto-$name.png
gnuplot <<EOF || die "gnuplot failed"
set terminal pngcairo size 1400,560 font "sans,10" noenhanced
set output "$png.tmp"
set multiplot layout 1,2 title "$name: quality per bit ($(basename "$dev"), $positions positions, context $ctx)"
set xlabel "bits per weight (2-D tensors)"
set logscale y
set grid
set key top right
set xrange [2:*]
set offsets 0, 0.7, 0, 0
do for [c=2:3] {
    set ylabel (c == 2 ? "perplexity increase over fp32 (%)" : "mean KL divergence from fp32 (nats)")
    plot "$out/plain.dat" using 1:c with linespoints pt 7 lc rgb "#1f77b4" title "q35", \
         "$out/imatrix.dat" using 1:c with linespoints pt 5 lc rgb "#2ca02c" title "q35 + imatrix", \
         "$out/mixed.dat" using 1:c with points pt 9 ps 1.6 lc rgb "#9467bd" title "q35 Q3_5 + Q4_5 classifier (imatrix)", \
         "$out/gptq.dat" using 1:c with points pt 11 ps 1.6 lc rgb "#ff7f0e" title "q35 GPTQ (--calib, --bpw-budget)", \
         "$out/llama.dat" using 1:c with points pt 13 ps 1.8 lc rgb "#d62728" title "llama.cpp Q8_0 / Q4_0", \
         "$out/plain.dat" using 1:c:4 with labels offset char 0,-1 notitle, \
         "$out/llama.dat" using 1:c:4 with labels offset char 0,1 notitle
}
unset multiplot
EOF
mv "$png.tmp" "$png"
log "wrote $table and $png"
