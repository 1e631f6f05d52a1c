#!/bin/bash
# Bits per weight and perplexity on tinystories-dev for every Q3_5-family
# type, with and without an imatrix from tinystories-calib, next to the
# fp32 model: one markdown table row per (model, type).
#   scripts/measure-quality.sh [OUTDIR]     (default: a temp folder)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${Q35_SHARED:-../shared}
out=${1:-$(mktemp -d)}
mkdir -p "$out"
make -s build/q35
dev=$SHARED/data/tinystories-dev.txt
calib=$SHARED/data/tinystories-calib.txt
ppl() { build/q35 perplexity -m "$1" -f "$dev" 2>/dev/null | sed -n 's/^perplexity: //p'; }
echo "| model | type | imatrix | 2-D bpw | dev perplexity | vs fp32 |"
echo "|---|---|---|---:|---:|---:|"
for spec in stories260K:stories260K/stories260K.bin babyllama105:babyllama105/model5000.bin \
            stories3M:stories3M/stories3M-q80.bin; do
    name=${spec%%:*}
    model=$SHARED/models/${spec#*:}
    base=$(ppl "$model")
    echo "| $name | F32 | - | 32 | $base | - |"
    build/q35 imatrix -m "$model" -f "$calib" -o "$out/$name.imatrix" >/dev/null 2>&1
    for type in Q2_5 Q3_5 Q4_5 Q8_S; do
        for im in no yes; do
            q=$out/$name-$type-$im.gguf
            if [ $im = yes ]; then flag=(--imatrix "$out/$name.imatrix"); else flag=(); fi
            bpw=$(build/q35 quantize "$model" "$q" --type $type "${flag[@]}" 2>/dev/null |
                  sed -E 's/.*2-D tensors ([0-9.]+) bits.*/\1/')
            p=$(ppl "$q")
            printf '| %s | %s | %s | %s | %s | %+.1f%% |\n' "$name" $type $im "$bpw" "$p" \
                "$(echo "($p / $base - 1) * 100" | bc -l)"
        done
    done
done
