#!/bin/bash
# cuda-device.sh — the CUDA backend's whole check on a GPU machine, in one
# go: build (make cuda-test-build), the GPU tests against the CPU
# reference (stories260K, stories3M F32 and Q3_5, small synthetic models in
# every family type, a synthetic llama2-7b Q3_5 generated here), a
# compute-sanitizer pass over small runs, `q35 run --gpu` beside the CPU,
# and the benchmark (bench/cuda_bench.cu). Logs and a summary go to $OUT
# (default ./cuda-device-out).
#
#   Q35_PREBUILT=1   use build-cuda/ as it is (binaries built elsewhere)
#   Q35_SHARED=DIR   where models/stories3M etc. live (default ../shared,
#                    else build-cuda/carry/shared)
# Libraries the machine may lack are taken from build-cuda/carry/lib
# (libcjson) and build-cuda/carry/lib-fallback (libgomp) when present.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/cuda-device-out}
mkdir -p "$OUT"
S="$OUT/summary.txt"
: >"$S"
say() { echo "== $*" | tee -a "$S"; }
t_start=$(date +%s)
since() { echo "$(( $(date +%s) - t_start ))s"; }

{ nvidia-smi; nvcc --version; gcc --version | head -1; nproc; df -h /dev/shm /tmp; } >"$OUT/env.txt" 2>&1
say "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"

carry=$PWD/build-cuda/carry
[ -d "$carry/lib" ] && export LD_LIBRARY_PATH="$carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ldconfig -p 2>/dev/null | grep -q libgomp.so.1 || export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$carry/lib-fallback"
if [ -z "${Q35_SHARED:-}" ]; then
    if [ -d ../shared/models ]; then export Q35_SHARED=$PWD/../shared; else export Q35_SHARED=$carry/shared; fi
fi

# ---- build
bins="build-cuda/q35 build-cuda/tests/test_cuda build-cuda/bench/cuda_bench"
unresolved() { for b in $bins; do [ -x "$b" ] || return 0; ldd "$b" 2>/dev/null | grep -q "not found" && return 0; done; return 1; }
if ldd build-cuda/bench/cuda_bench 2>/dev/null | grep -q "libcublas.*not found"; then
    lib=$(find /usr/local /usr/lib /opt -name 'libcublas.so.1[0-9]' 2>/dev/null | head -n 1)
    [ -n "$lib" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$lib")"
fi
if [ "${Q35_PREBUILT:-0}" = 1 ] && ! unresolved; then
    say "build: prebuilt binaries ($(since))"
else
    extra=() # a machine without libcjson-dev: the carried header and library
    if ! echo '#include <cjson/cJSON.h>' | gcc -E -x c - >/dev/null 2>&1 && [ -d "$carry/include" ]; then
        extra=(EXTRA_CFLAGS="-Wno-error -I$carry/include" LDLIBS="-L$carry/lib -fopenmp -lcjson -lm")
    else
        extra=(EXTRA_CFLAGS=-Wno-error)
    fi
    if make -j"$(nproc)" cuda-test-build "${extra[@]}" >"$OUT/build.log" 2>&1; then
        say "build: ok ($(since))"
    else
        say "build: FAILED ($(since)); the end of build.log:"
        tail -n 30 "$OUT/build.log" | tee -a "$S"
        exit 1
    fi
fi

# ---- models made here
shm=/dev/shm
[ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -gt 12000000 ] 2>/dev/null || shm=/tmp
big=$shm/llama2-7b-Q3_5.gguf            # llama2-7b's shape, Q3_5
wide=$shm/llama2-7b-width-4-layers-F32.gguf # its width (and vocabulary), 4 layers, F32
small=$shm/q35-small-q35.gguf
t0=$(date +%s)
build-cuda/q35 synth --shape llama2-7b --type Q3_5 "$big" >"$OUT/synth.log" 2>&1 && \
    build-cuda/q35 synth --shape llama2-7b --type F32 --layers 4 "$wide" >>"$OUT/synth.log" 2>&1 && \
    build-cuda/q35 synth --shape tiny --type Q3_5 --dim 256 --hidden 688 --layers 2 --heads 4 --kv-heads 2 --vocab 512 --ctx 64 "$small" >>"$OUT/synth.log" 2>&1
say "synthetic models: rc $? in $(( $(date +%s) - t0 ))s, $(du -h "$big" "$wide" 2>/dev/null | cut -f1 | tr '\n' ' ') ($(since))"

# ---- tests
Q35_CUDA_SYNTH="$big $wide" timeout 200 build-cuda/tests/test_cuda >"$OUT/test.log" 2>&1
say "tests: rc $? ($(since))"
grep -E "device:| pos: |out-of-memory|FAIL|passed,|skipped" "$OUT/test.log" | tee -a "$S"

# ---- compute-sanitizer over small runs
st=$Q35_SHARED/models/stories260K/stories260K.bin
if command -v compute-sanitizer >/dev/null; then
    for m in "$st" "$small"; do
        timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 build-cuda/q35 run --gpu -m "$m" \
            -p "Once upon a time" -n 12 --temp 0 -s 1 >>"$OUT/sanitizer.log" 2>&1
        say "compute-sanitizer memcheck, q35 run --gpu -m $(basename "$m"): rc $? ($(since))"
    done
    grep -E "ERROR SUMMARY|Invalid|error" "$OUT/sanitizer.log" | head -n 8 | tee -a "$S"
fi

# ---- q35 run: GPU, -ngl, CPU (greedy: the same text expected)
s3=$Q35_SHARED/models/stories3M/stories3M-q80.bin
for mode in "--gpu" "-ngl 3" ""; do
    # shellcheck disable=SC2086
    build-cuda/q35 run -m "$s3" -p "Once upon a time" -n 48 --temp 0 -s 1 $mode >/tmp/q35-run.txt 2>/tmp/q35-run.err
    rc=$?
    say "q35 run ${mode:-(CPU)}: rc $rc: $(tr '\n' ' ' </tmp/q35-run.txt | cut -c1-150)"
    tail -n 2 /tmp/q35-run.err | tee -a "$S"
done

# ---- benchmark
timeout 150 build-cuda/bench/cuda_bench "$big" >"$OUT/bench.log" 2>&1
say "bench: rc $? ($(since))"
cat "$OUT/bench.log" >>"$S"
rm -f "$big" "$wide" "$small"
cat "$OUT/bench.log"
say "done in $(since)"
