// tok-bench-hf.js — Hugging Face's tokenizers (npm `tokenizers`) on the same job as
// bench/tok_bench.c: a text file encoded in one call ("whole") or one call per line ("lines",
// one after another), special tokens parsed (the library always does), none added, best of N
// runs, CPU time of the process (user + system) around the calls.
//   cd $Q35_ORACLES && RAYON_NUM_THREADS=1 NODE_PATH=$Q35_ORACLES/node_modules \
//     node tok-bench-hf.js TOKENIZER_JSON TEXT_FILE [whole|lines] [REPEATS]
const fs = require('fs');
const { Tokenizer } = require('tokenizers');
const [file, textFile, mode, reps] = process.argv.slice(2);
const tok = Tokenizer.fromFile(file);
const text = fs.readFileSync(textFile, 'utf8');
const bytes = Buffer.byteLength(text);
(async () => {
  let best = Infinity, n = 0;
  for (let r = 0; r < Number(reps || 3); r++) {
    const pieces = mode === 'lines' ? text.split(/(?<=\n)/) : [text];
    const c0 = process.cpuUsage();
    n = 0;
    for (const p of pieces) n += (await tok.encode(p, null, { addSpecialTokens: false })).getIds().length;
    const c = process.cpuUsage(c0);
    const s = (c.user + c.system) / 1e6;
    if (s < best) best = s;
  }
  console.log(`hf   ${mode === 'lines' ? 'lines' : 'whole'}: ${bytes} bytes -> ${n} tokens in ${best.toFixed(3)} s CPU: ` +
              `${(bytes / best / 1e6).toFixed(2)} MB/s`);
})();
