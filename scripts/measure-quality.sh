#!/bin/bash
# Bits per weight, perplexity on tinystories-dev and quantization time for
# every Q3_5-family type: plain, with an imatrix from tinystories-calib,
# with GPTQ calibrated on it (--calib), and GPTQ with the 2-D tensors'
# budget of 3.75 bits per weight spent (--bpw-budget); next to the fp32
# model. One markdown table row per (model, type, method).
#   scripts/measure-quality.sh [OUTDIR]     (default: a temp folder)
#   BUILD=build-x scripts/measure-quality.sh    uses build-x/q35
#   MODELS="stories260K" TYPES="Q3_5" METHODS="calib budget" limit the table
#   THREADS=N quantizes with N threads (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${Q35_SHARED:-../shared}
BUILD=${BUILD:-build}
Q=$BUILD/q35
out=${1:-$(mktemp -d)}
mkdir -p "$out"
make -s BUILD="$BUILD" "$Q"
dev=$SHARED/data/tinystories-dev.txt
calib=$SHARED/data/tinystories-calib.txt
ppl() { "$Q" perplexity -m "$1" -f "$dev" 2>/dev/null | sed -n 's/^perplexity: //p'; }
declare -A path=([stories260K]=stories260K/stories260K.bin [babyllama105]=babyllama105/model5000.bin
                 [stories3M]=stories3M/stories3M-q80.bin)
echo "| model | type | method | 2-D bpw | dev perplexity | vs fp32 | quantize s |"
echo "|---|---|---|---:|---:|---:|---:|"
for name in ${MODELS:-stories260K babyllama105 stories3M}; do
    model=$SHARED/models/${path[$name]}
    base=$(ppl "$model")
    echo "| $name | F32 | - | 32 | $base | - | - |"
    "$Q" imatrix -m "$model" -f "$calib" -o "$out/$name.imatrix" >/dev/null 2>&1
    for type in ${TYPES:-Q2_5 Q3_5 Q4_5 Q8_S}; do
        for method in ${METHODS:-plain imatrix calib budget}; do
            case $method in
                plain) flag=() ;;
                imatrix) flag=(--imatrix "$out/$name.imatrix") ;;
                calib) flag=(--calib "$calib") ;;
                budget) flag=(--calib "$calib" --bpw-budget 3.75) ;;
            esac
            [ $method = budget ] && [ $type != Q3_5 ] && continue
            q=$out/$name-$type-$method.gguf
            t0=$(date +%s.%N)
            bpw=$("$Q" quantize "$model" "$q" --type $type "${flag[@]}" ${THREADS:+-t $THREADS} 2>/dev/null |
                  sed -E 's/.*2-D tensors ([0-9.]+) bits.*/\1/')
            t=$(echo "$(date +%s.%N) - $t0" | bc)
            p=$(ppl "$q")
            printf '| %s | %s | %s | %s | %s | %+.1f%% | %.1f |\n' "$name" $type $method "$bpw" "$p" \
                "$(echo "($p / $base - 1) * 100" | bc -l)" "$t"
        done
    done
done
