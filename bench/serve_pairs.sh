#!/bin/bash
# serve_pairs.sh — q35 serve's aggregate generation rate at A and B
# concurrent streams, measured in alternation: a server with A slots and
# one with B slots up together (loopback), then ROUNDS rounds of A streams
# on the first, B streams on the second and 1 stream on the first, each
# stream one streamed completion of PROMPT random token ids and exactly GEN
# tokens (bench/serve_load.mjs, ignore_eos). Prints each round's "together"
# rate (all streams generating at once; one stream: its own rate), wall
# rate and errors, then the medians. For small differences (16 streams
# against 8) that the machine's drift hides between the separate servers
# of serve_throughput.sh.
#
#   bench/serve_pairs.sh MODEL [ROUNDS]
#
# Environment: Q35 (build/q35), A (8), B (16), THREADS (2), PROMPT (128),
# GEN (128), CTX (512), PORT_A (18308), PORT_B (18316).
set -euo pipefail
model=${1:?usage: serve_pairs.sh MODEL [ROUNDS]}
rounds=${2:-6}
Q35=${Q35:-build/q35}
A=${A:-8} B=${B:-16} THREADS=${THREADS:-2} PROMPT=${PROMPT:-128} GEN=${GEN:-128} CTX=${CTX:-512}
PORT_A=${PORT_A:-18308} PORT_B=${PORT_B:-18316}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/serve_pairs.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT

"$Q35" serve -m "$model" --port "$PORT_A" -t "$THREADS" -np "$A" -c "$CTX" >"$tmp/a.log" 2>&1 &
pids+=($!)
"$Q35" serve -m "$model" --port "$PORT_B" -t "$THREADS" -np "$B" -c "$CTX" >"$tmp/b.log" 2>&1 &
pids+=($!)
for port in "$PORT_A" "$PORT_B"; do
    for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "serve_pairs: the server on $port did not start" >&2; exit 1; }
done

load() { # load PORT STREAMS SEED: prints "together wall errors"
    node "$here/serve_load.mjs" --url "http://127.0.0.1:$1" --clients "$2" --requests 1 --prompt-tokens "$PROMPT" \
        --vocab 32000 --max-tokens "$GEN:$GEN" --chat 0 --ignore-eos --seed "$3" --json "$tmp/r.json" --quiet >/dev/null || true
    node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
             console.log(j.concurrent_tokens_per_s, j.tokens_per_s, j.errors)' "$tmp/r.json"
}

load "$PORT_A" "$A" 9001 >/dev/null # warm: every slot's pages and the connection threads
load "$PORT_B" "$B" 9002 >/dev/null
echo -e "round\tstreams\ttogether_tok_s\twall_tok_s\terrors" | tee "$tmp/all.tsv"
for r in $(seq 1 "$rounds"); do
    for spec in "$PORT_A $A 1" "$PORT_B $B 2" "$PORT_A 1 3"; do
        read -r port n k <<<"$spec"
        read -r tog wall err < <(load "$port" "$n" $((r * 10 + k)))
        echo -e "$r\t$n\t$tog\t$wall\t$err" | tee -a "$tmp/all.tsv"
    done
done
node -e '
    const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").slice(1).map(l => l.split("\t"));
    const med = (a) => { const s = a.map(Number).sort((x, y) => x - y); const m = s.length >> 1;
                         return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
    const ns = [...new Set(rows.map(r => r[1]))];
    const m = Object.fromEntries(ns.map(n => [n, med(rows.filter(r => r[1] === n).map(r => r[2]))]));
    console.log("medians (together, tok/s): " + ns.map(n => `${n} streams ${m[n].toFixed(1)}`).join(", ") +
                `; ${ns[0]} against 1: ${(m[ns[0]] / m["1"]).toFixed(2)}x, ${ns[1]} against ${ns[0]}: ` +
                `${(m[ns[1]] / m[ns[0]]).toFixed(3)}x`);' "$tmp/all.tsv"
