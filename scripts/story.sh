#!/bin/sh
# The main job: a story from the default model (stories260K).
# The model is looked up in $Q35_MODELS, ./models, ../shared/models; if none
# has it, stories260K.bin and tok512.bin are downloaded from the public
# karpathy/tinyllamas repository on Hugging Face into ./models.
set -eu
cd "$(dirname "$0")/.."
found=""
for d in "${Q35_MODELS:-}" ./models ../shared/models; do
    if [ -n "$d" ] && [ -r "$d/stories260K/stories260K.bin" ] && [ -r "$d/stories260K/tok512.bin" ]; then
        found="$d/stories260K/stories260K.bin"
        break
    fi
done
if [ -z "$found" ]; then
    url=https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K
    mkdir -p models/stories260K
    echo "downloading stories260K from $url" >&2
    for f in stories260K.bin tok512.bin; do
        curl -fL --retry 3 -o "models/stories260K/$f.part" "$url/$f"
        mv "models/stories260K/$f.part" "models/stories260K/$f"
    done
    found=models/stories260K/stories260K.bin
fi
exec ./build/q35 run -m "$found" -p "${PROMPT:-Once upon a time}" -n "${N:-256}" "$@"
