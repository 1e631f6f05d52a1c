// The chat-template oracle as test_chat runs it, through the same
// @huggingface/jinja build ORACLES_DIR/jinja-render.mjs uses, but where a
// failure is an answer, not the end of the run:
//   node tests/jinja_oracle.mjs ORACLES_DIR TEMPLATE... < conversations.jsonl
//     renders every conversation line with each template, with that
//     script's context (bos_token/eos_token from a tokenizer_config.json,
//     else "<s>"/"</s>"; the line's keys; add_generation_prompt a boolean);
//   node tests/jinja_oracle.mjs ORACLES_DIR --cases < cases.jsonl
//     renders each {"template": SOURCE, "context": {...}} line as is.
// Per rendering it prints {"out": STRING} or {"error": MESSAGE}.
import fs from 'fs';
import path from 'path';
import { pathToFileURL } from 'url';
const [oracles, ...args] = process.argv.slice(2);
const { Template } = await import(pathToFileURL(path.join(oracles,
    'node_modules/@huggingface/jinja/dist/index.js')).href);
const lines = fs.readFileSync(0, 'utf8').split('\n').filter(l => l.length > 0);
const say = (f) => {
  let r;
  try { r = { out: f() }; } catch (e) { r = { error: String(e && e.message || e) }; }
  process.stdout.write(JSON.stringify(r) + '\n');
};
if (args[0] === '--cases') {
  for (const l of lines) {
    const c = JSON.parse(l);
    say(() => new Template(c.template).render(c.context));
  }
} else {
  for (const file of args) {
    const src = fs.readFileSync(file, 'utf8');
    let tpl = src, bos = '<s>', eos = '</s>';
    if (file.endsWith('.json')) {
      const c = JSON.parse(src);
      tpl = Array.isArray(c.chat_template) ? c.chat_template.find(t => t.name === 'default').template : c.chat_template;
      const s = t => (t && typeof t === 'object') ? t.content : t;
      bos = s(c.bos_token) ?? ''; eos = s(c.eos_token) ?? '';
    }
    let t = null, perr = null;
    try { t = new Template(tpl); } catch (e) { perr = 'parse: ' + String(e && e.message || e); }
    for (const l of lines) {
      if (perr !== null) { process.stdout.write(JSON.stringify({ error: perr }) + '\n'); continue; }
      const conv = JSON.parse(l);
      say(() => t.render({ bos_token: bos, eos_token: eos, ...conv,
                           add_generation_prompt: !!conv.add_generation_prompt }));
    }
  }
}
