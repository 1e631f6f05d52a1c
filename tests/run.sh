#!/bin/sh
# Runs each test program given, sums their "N passed, N failed[, K skipped
# (...)]" lines and prints the total as the last line; exits non-zero if
# any test failed or crashed.
passed=0; failed=0; crashed=0; skipped=0
for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E 'FAIL|passed,|^skipped:'
    line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')
    f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(printf '%s' "$line" | grep -E '[0-9]+ skipped' | sed -E 's/.* ([0-9]+) skipped.*/\1/')
    [ -n "$p" ] || p=0
    [ -n "$f" ] || f=0
    [ -n "$s" ] || s=0
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then
        echo "$t: exited with status $rc"; printf '%s\n' "$out" | tail -n 20
        f=1; crashed=$((crashed + 1))
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
done
if [ $skipped -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped (see the skipped: lines above)"
else
    echo "$passed passed, $failed failed"
fi
[ $failed -eq 0 ]
