#!/bin/sh
# bench-llamacpp.sh — q35 beside llama.cpp on the same synthetic shape, in one run.
#   scripts/bench-llamacpp.sh LLAMA_CPP_BUILD_DIR SHAPE WORKDIR [REPS]
# LLAMA_CPP_BUILD_DIR holds bin/llama-quantize and bin/llama-bench (llama.cpp built
# from its public source with its own CMake, beside the project, never committed).
# SHAPE is a `q35 synth --shape` name (tinyllama-1.1b, llama2-7b, ...). WORKDIR
# takes the model files (a few GB for tinyllama, ~30 GB for llama2-7b): keep it
# outside the repository. q35 writes the F16 GGUF; llama-quantize --pure makes
# llama.cpp's types from it, so both engines run exactly the same shape.
# Prints llama-bench's and q35 bench's markdown tables (pp64, and pp512 for tinyllama; tg32; 1 and 2 threads)
# and q35's roofline columns. Types: q35 Q2_5 Q3_5 Q4_5 Q8_S ($Q35_TYPES); llama.cpp Q4_0
# Q3_K_S, and IQ3_S for shapes below 2B parameters (its quantizer is slow).
# CLEAN=1 removes the shape's files at the end (7-9B shapes: ~30 GB each).
set -eu
LB=${1:?llama.cpp build dir}; SHAPE=${2:?shape}; W=${3:?work dir}; R=${4:-3}
Q35=${Q35:-./build/q35}
mkdir -p "$W"
F16="$W/$SHAPE-f16.gguf"
[ -s "$F16" ] || "$Q35" synth --shape "$SHAPE" --type F16 "$F16"
LT="Q4_0 Q3_K_S"
P=64
case "$SHAPE" in tinyllama*) LT="$LT IQ3_S"; P=64,512;; esac
for t in $LT; do
    f="$W/$SHAPE-$t.gguf"
    [ -s "$f" ] || "$LB/bin/llama-quantize" --pure "$F16" "$f" "$t" 2 > "$W/quantize-$t.log" 2>&1
done
QT=${Q35_TYPES:-Q2_5 Q3_5 Q4_5 Q8_S}
for t in $QT; do
    f="$W/$SHAPE-$t.gguf"
    [ -s "$f" ] || "$Q35" synth --shape "$SHAPE" --type "$t" "$f"
done
[ "${CLEAN:-0}" = 1 ] && rm -f "$F16"
echo "## llama.cpp ($SHAPE, llama-bench -p $P -n 32 -t 1,2 -r $R)"
for t in $LT; do
    "$LB/bin/llama-bench" -m "$W/$SHAPE-$t.gguf" -p "$P" -n 32 -t 1,2 -r "$R" -o md 2>/dev/null
done
echo "## q35 ($SHAPE, q35 bench -p $P -n 32 -t 1,2 -r $R --roofline)"
MS=""
for t in $QT; do MS="$MS -m $W/$SHAPE-$t.gguf"; done
# shellcheck disable=SC2086
"$Q35" bench $MS -p "$P" -n 32 -t 1,2 -r "$R" --roofline -o md
if [ "${CLEAN:-0}" = 1 ]; then
    for t in $LT $QT; do rm -f "$W/$SHAPE-$t.gguf"; done
fi
