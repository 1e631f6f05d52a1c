#!/bin/bash
# Runs each libFuzzer target for SECONDS from its committed seed corpus
# (fuzz/corpus/NAME) plus a scratch corpus (build-fuzz/corpus-NAME), and
# prints executions run and any crash. Exits non-zero on a crash.
#   scripts/fuzz-run.sh SECONDS build-fuzz/fuzz_X ...
set -uo pipefail
secs=$1; shift
status=0
for f in "$@"; do
    n=${f##*/}
    mkdir -p "build-fuzz/corpus-$n" "fuzz/corpus/$n"
    log="build-fuzz/$n.log"
    "$f" -max_total_time="$secs" -max_len=65536 -print_final_stats=1 -artifact_prefix="build-fuzz/$n-" \
        "build-fuzz/corpus-$n" "fuzz/corpus/$n" >"$log" 2>&1
    rc=$?
    execs=$(sed -n -E 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log")
    echo "$n: ${execs:-?} executions in ${secs} s, exit $rc"
    if [ $rc -ne 0 ]; then
        grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -n 10
        status=1
    fi
done
exit $status
