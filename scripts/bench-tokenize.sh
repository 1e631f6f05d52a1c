#!/bin/bash
# Tokenization speed on one thread: q35 (bench/tok_bench.c) beside Hugging Face's tokenizers
# (bench/tok-bench-hf.js, the npm package the oracle tests use), on 10 MB of text, for every
# tokenizer.json of the oracle cache. CPU seconds of the encode calls, best of 3 (q35) / 1 (HF,
# slower), loading excluded. Not a test: figures for docs/ARCHITECTURE.md.
#   scripts/bench-tokenize.sh [lines|whole] [TOKENIZER_NAME ...]
# lines: one call per line of the text (documents, prompts); whole: the 10 MB in one call.
# Two texts: the dev text repeated to 10 MB (English prose), and the test corpus of
# tests/tok_corpus.h regenerated to 10 MB (code, CJK, Arabic, emoji, whitespace, digits ...).
# Needs ../shared/oracles/setup.sh and scripts/fetch-mistral-tokenizers.sh run first.
set -euo pipefail
cd "$(dirname "$0")/.."
O=${Q35_ORACLES:-$HOME/.cache/q35-oracles}
mode=${1:-lines}
shift || true
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(llama3_2 qwen2_5 qwen3 mistral_nemo gemma gemma2 gemma3 gpt2 \
                                   deepseek_v3 mistral_v1 mistral_v2 mistral_v3)
make -s build/bench/tok_bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/english.txt" <<'PY'
import sys
d = open('../shared/data/tinystories-dev.txt', encoding='utf-8').read()
s = d * (10_000_000 // len(d.encode()) + 1)
open(sys.argv[1], 'w', encoding='utf-8').write(s.encode()[:10_000_000].decode('utf-8', 'ignore'))
PY
build/bench/tok_bench --write-mixed "$tmp/mixed.txt" 10000000 ../shared/data/tinystories-dev.txt
printf '%-13s %-8s %10s %10s %8s  %s\n' tokenizer text "q35 MB/s" "HF MB/s" "q35/HF" "tokens q35 / HF"
for t in "${names[@]}"; do
  json=$O/tok/$t/tokenizer.json
  [[ -s $json ]] || { echo "$t: $json missing"; continue; }
  for text in english mixed; do
    q=$(build/bench/tok_bench "$json" "$tmp/$text.txt" "$mode" 3)
    h=$(cd "$O" && RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false NODE_PATH="$O/node_modules" \
        node "$OLDPWD/bench/tok-bench-hf.js" "$json" "$tmp/$text.txt" "$mode" 1)
    qm=$(sed -E 's/.*: ([0-9.]+) MB\/s.*/\1/' <<<"$q"); hm=$(sed -E 's/.*: ([0-9.]+) MB\/s.*/\1/' <<<"$h")
    qt=$(sed -E 's/.*-> ([0-9]+) tokens.*/\1/' <<<"$q"); ht=$(sed -E 's/.*-> ([0-9]+) tokens.*/\1/' <<<"$h")
    printf '%-13s %-8s %10s %10s %7.1fx  %s / %s\n' "$t" "$text" "$qm" "$hm" \
      "$(python3 -c "print($qm / $hm)")" "$qt" "$ht"
  done
done
