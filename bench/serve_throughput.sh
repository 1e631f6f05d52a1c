#!/bin/bash
# serve_throughput.sh — aggregate generation throughput of q35 serve and
# llama-server at 1/2/4/8/16 concurrent streams, with the same load
# generator (bench/serve_load.mjs) against both, rounds interleaved so a
# shared machine's load falls on both alike; prints the median of the
# rounds.
#
#   bench/serve_throughput.sh Q35_MODEL LLAMA_MODEL [ROUNDS]
#
# Each stream is one client sending REQS streamed completions of PROMPT
# random token ids with max_tokens GEN and ignore_eos (so exactly GEN
# tokens each). Each server, once started, serves one unrecorded run of as
# many streams as it has slots (warm). Every run draws its prompts from its
# own seed: llama-server keeps finished prompts' cache and reuses a repeated
# one (with one seed for all runs, the 8-stream run met the 4-stream run's 4
# prompts again). Servers get --parallel 8 for 1..8 streams and --parallel 16
# for 16, THREADS threads, CTX positions per slot, loopback only.
# Three rates per run: "together" = the generation rate while every
# stream generates (content events of all streams between the last
# stream's first token and the first stream's last, over that window; one
# stream: its rate from first to last token), "wall" = generated tokens /
# the run's wall time (prompts included), "decode" = the sum of the
# streams' own rates (first to last token, each stream's slowed by the
# others' prompts while they are read). Environment: Q35 (build/q35), LLAMA_SERVER
# (/work/llama.cpp-build/bin/llama-server), THREADS (2), STREAMS
# ("1 2 4 8 16"), PROMPT (128), GEN (128), REQS (1), CTX (512), OUT (a
# results file, default /tmp/serve_throughput.tsv), LLAMA_ARGS (more
# llama-server flags, e.g. "--poll 0"). SERVERS ("q35 llama"): the two
# compared; "mpi" is q35-mpi serve on Q35_MODEL under mpirun with RANKS
# (2) ranks of THREADS threads (Q35_MPI, build-mpi/q35-mpi), e.g.
#   SERVERS="q35 mpi" THREADS=1 STREAMS="1 4" bench/serve_throughput.sh M.gguf - 3
set -euo pipefail
q35_model=${1:?usage: serve_throughput.sh Q35_MODEL LLAMA_MODEL [ROUNDS]}
llama_model=${2:?usage: serve_throughput.sh Q35_MODEL LLAMA_MODEL [ROUNDS]}
rounds=${3:-3}
Q35=${Q35:-build/q35}
Q35_MPI=${Q35_MPI:-build-mpi/q35-mpi}
RANKS=${RANKS:-2}
SERVERS=${SERVERS:-q35 llama}
read -r srv_a srv_b <<<"$SERVERS"
LLAMA_SERVER=${LLAMA_SERVER:-/work/llama.cpp-build/bin/llama-server}
THREADS=${THREADS:-2}
STREAMS=${STREAMS:-1 2 4 8 16}
PROMPT=${PROMPT:-128}
GEN=${GEN:-128}
REQS=${REQS:-1}
CTX=${CTX:-512}
OUT=${OUT:-/tmp/serve_throughput.tsv}
here=$(cd "$(dirname "$0")" && pwd)
log=$(mktemp /tmp/serve_throughput.XXXXXX)
pid=
port=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -f "$log"' EXIT

port_free() { # a free loopback port
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

start() { # start SERVER NP: starts it (sets pid, port), waits for /health
    local server=$1 np=$2
    port=$(port_free)
    if [ "$server" = q35 ]; then
        "$Q35" serve -m "$q35_model" --port "$port" -t "$THREADS" -np "$np" -c "$CTX" >"$log" 2>&1 &
    elif [ "$server" = mpi ]; then
        local root=()
        [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
        mpirun -q --oversubscribe "${root[@]}" -np "$RANKS" "$Q35_MPI" serve -m "$q35_model" --port "$port" \
            -t "$THREADS" -np "$np" -c "$CTX" >"$log" 2>&1 &
    else
        "$LLAMA_SERVER" -m "$llama_model" --host 127.0.0.1 --port "$port" -t "$THREADS" -np "$np" \
            -c $((CTX * np)) --no-webui ${LLAMA_ARGS:-} >"$log" 2>&1 &
    fi
    pid=$!
    for _ in $(seq 1 600); do
        if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "serve_throughput: $server did not start:" >&2
    tail -n 5 "$log" >&2
    return 1
}

stop() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
}

load() { # load SERVER PORT STREAMS REQUESTS SEED ARGS...: serve_load.mjs against one server
    local server=$1 port=$2 n=$3 reqs=$4 seed=$5
    shift 5
    local ban=()
    # llama-server fails a stream whose text is not UTF-8 (a random model's
    # byte tokens <0x00>..<0xFF>, ids 3..258 in synth's vocabulary)
    [ "$server" = llama ] && ban=(--ban-tokens 3:258)
    node "$here/serve_load.mjs" --url "http://127.0.0.1:$port" --clients "$n" --requests "$reqs" "${ban[@]}" \
        --prompt-tokens "$PROMPT" --vocab 32000 --max-tokens "$GEN:$GEN" --chat 0 --ignore-eos --seed "$seed" "$@"
}

run() { # run SERVER PORT STREAMS ROUND: one measurement, a line of $OUT
    local server=$1 port=$2 n=$3 r=$4 j
    j=$(mktemp /tmp/serve_throughput.XXXXXX.json)
    load "$server" "$port" "$n" "$REQS" $((r * 1000 + n)) --json "$j" >&2 ||
        echo "serve_throughput: $server, $n streams: errors" >&2
    node -e '
        const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        const [server, n, r] = process.argv.slice(2);
        console.log([r, server, n, j.ok, j.errors, j.tokens, j.tokens_per_s, (j.stream_tokens_per_s * n).toFixed(2),
                     j.ttft_ms_p50, j.itl_ms_p50, j.concurrent_tokens_per_s].join("\t"));' "$j" "$server" "$n" "$r" | tee -a "$OUT"
    rm -f "$j"
}

warm() { # warm SERVER PORT NP: NP streams once, not recorded, so that every slot's
    # cache pages and the connection threads exist before the measured runs (a fresh
    # 16-slot server otherwise paid them in its first and only run, the 8-slot one in
    # its 1-stream run)
    load "$1" "$2" "$3" 1 $((777000 + $3)) --quiet >/dev/null 2>&1 ||
        echo "serve_throughput: $1, warm-up with $3 streams: errors" >&2
}

echo -e "round\tserver\tstreams\tok\terrors\ttokens\twall_tok_s\tdecode_tok_s\tttft_ms_p50\titl_ms_p50\ttogether_tok_s" | tee "$OUT"
for r in $(seq 1 "$rounds"); do
    order="$srv_a $srv_b"
    [ $((r % 2)) -eq 0 ] && order="$srv_b $srv_a"
    for server in $order; do
        for np in 8 16; do
            todo=
            for n in $STREAMS; do
                if { [ "$np" = 8 ] && [ "$n" -le 8 ]; } || { [ "$np" = 16 ] && [ "$n" -gt 8 ]; }; then todo="$todo $n"; fi
            done
            [ -z "$todo" ] && continue
            start "$server" "$np"
            warm "$server" "$port" "$np"
            for n in $todo; do run "$server" "$port" "$n" "$r"; done
            stop
        done
    done
done

# medians over the rounds
node -e '
    const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").slice(1).map(l => l.split("\t"));
    const med = (a) => { const s = a.map(Number).sort((x, y) => x - y); const m = s.length >> 1;
                         return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
    const get = (srv, n, col) => med(rows.filter(r => r[1] === srv && r[2] === n).map(r => r[col]));
    const ns = [...new Set(rows.map(r => r[2]))];
    const [a, b] = [process.argv[3], process.argv[4]];
    console.log("\nmedians of " + process.argv[2] + " rounds (generation tokens/s; x1: against the same server at 1 stream)");
    console.log(`| streams | ${a} together | x1 | ${a} wall | ${a} decode | ${b} together | x1 | ${b} wall | ${b} decode | ${a}/${b} (together) | ${a}/${b} (wall) |`);
    console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    const one = (srv) => get(srv, "1", 10); /* NaN (printed) where STREAMS has no 1 */
    for (const n of ns) {
        const qt = get(a, n, 10), qw = get(a, n, 6), qd = get(a, n, 7), lt = get(b, n, 10), lw = get(b, n, 6), ld = get(b, n, 7);
        console.log(`| ${n} | ${qt.toFixed(1)} | ${(qt / one(a)).toFixed(2)} | ${qw.toFixed(1)} | ${qd.toFixed(1)} | ` +
                    `${lt.toFixed(1)} | ${(lt / one(b)).toFixed(2)} | ${lw.toFixed(1)} | ${ld.toFixed(1)} | ` +
                    `${(qt / lt).toFixed(2)} | ${(qw / lw).toFixed(2)} |`);
    }' "$OUT" "$rounds" "$srv_a" "$srv_b"
