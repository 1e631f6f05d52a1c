// tok-oracle.js — Hugging Face's tokenizers (npm `tokenizers`, the Rust library) as the
// oracle for q35's tokenizers (tests/test_tokenizer_oracle.c runs it).
//   cd $Q35_ORACLES && NODE_PATH=$Q35_ORACLES/node_modules node tok-oracle.js TOKENIZER_JSON CORPUS
// CORPUS holds one text per line as hex bytes (any bytes: the test's strings include invalid
// UTF-8). Each text reaches the library as new TextDecoder('utf-8').decode(bytes): every
// maximal invalid subpart becomes U+FFFD, as q35 reads invalid UTF-8 too. Prints one JSON line
// per text:
//   {"plain": ids, "special": ids, "decoded": text, "decoded_special": text}
// plain:   addSpecialTokens false, special added tokens NOT matched in the text (the library's
//          encode_special_tokens; the binding lacks the setter, so in a copy of the file each
//          special added token is dropped when model.vocab holds it, else respelled as a string
//          text never holds: its spelling then reaches the model as text, which is what that
//          setting does; every other added token keeps its id, which is checked);
// special: addSpecialTokens true (the post-processor's BOS ...), special tokens matched;
// decoded*: decode(ids, skipSpecialTokens = false) of each, with the file as it is.
const fs = require('fs');
const { Tokenizer } = require('tokenizers');
const [file, corpus] = process.argv.slice(2);
const json = fs.readFileSync(file, 'utf8');
const full = Tokenizer.fromString(json);
const parsed = JSON.parse(json);
const inVocab = t => Object.prototype.hasOwnProperty.call(parsed.model.vocab || {}, t.content);
parsed.added_tokens = (parsed.added_tokens || [])
  .filter(t => !(t.special && inVocab(t)))
  .map(t => (t.special ? { ...t, content: `\u0000q35-unmatched-${t.id}` } : t));
const plain = Tokenizer.fromString(JSON.stringify(parsed));
for (const t of parsed.added_tokens)
  if (!t.special && plain.tokenToId(t.content) !== t.id)
    throw new Error(`${file}: added token ${t.content} moved to ${plain.tokenToId(t.content)}`);
const dec = new TextDecoder('utf-8');
(async () => {
  const out = [];
  const lines = fs.readFileSync(corpus, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop(); // the file's last newline
  for (const line of lines) {
    const text = dec.decode(Buffer.from(line, 'hex'));
    const p = (await plain.encode(text, null, { addSpecialTokens: false })).getIds();
    const s = (await full.encode(text, null, { addSpecialTokens: true })).getIds();
    out.push(JSON.stringify({
      plain: p, special: s,
      decoded: await full.decode(p, false), decoded_special: await full.decode(s, false),
    }));
  }
  process.stdout.write(out.join('\n') + '\n');
})();
