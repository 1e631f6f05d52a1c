// serve_openai.cjs — the official `openai` npm client against a running
// `q35 serve` (stories260K), started by tests/test_server.c:
//   node tests/serve_openai.cjs ORACLES_DIR BASE_URL API_KEY
// Prints "ok NAME" or "FAIL NAME: why" per check, then "done".
'use strict';
const { createRequire } = require('module');
const [oracles, baseURL, apiKey] = process.argv.slice(2);
const OpenAI = createRequire(oracles + '/package.json')('openai');
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120000 });

let failed = 0;
function check(name, cond, why) {
  if (cond) console.log('ok ' + name);
  else {
    failed++;
    console.log('FAIL ' + name + ': ' + (why === undefined ? '' : typeof why === 'string' ? why : JSON.stringify(why)));
  }
}

const prompt = 'Once upon a time';
const greedy = ', there was a little girl named Lily. She loved to play outside in the park. One day,';

async function chatText(p) {
  const r = await client.chat.completions.create(p);
  return r.choices[0].message.content;
}
async function streamChat(p) {
  const s = await client.chat.completions.create({ ...p, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, chunks = 0, role = null, lp = [];
  for await (const c of s) {
    chunks++;
    if (c.usage) usage = c.usage;
    if (!c.choices.length) continue;
    const ch = c.choices[0];
    if (ch.delta.role) role = ch.delta.role;
    if (ch.delta.content) text += ch.delta.content;
    if (ch.logprobs && ch.logprobs.content) lp.push(...ch.logprobs.content);
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  return { text, finish, usage, chunks, role, lp };
}
async function streamCompletion(p) {
  const s = await client.completions.create({ ...p, stream: true });
  let text = '', finish = null;
  for await (const c of s) {
    if (!c.choices.length) continue;
    text += c.choices[0].text;
    if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
  }
  return { text, finish };
}
async function expectError(name, status, fn, mention) {
  try {
    await fn();
    check(name, false, 'no error');
  } catch (e) {
    check(name, e instanceof OpenAI.APIError && e.status === status && (!mention || String(e.message).includes(mention)),
          `${e.constructor.name} ${e.status} ${e.message}`);
  }
}

async function main() {
  const models = await client.models.list();
  check('models.list', models.data.length === 1 && typeof models.data[0].id === 'string', models.data);
  const model = models.data[0].id;

  // chat, whole and streamed: the same seed gives the same text
  const chatP = { model, messages: [{ role: 'system', content: 'Tell a story.' }, { role: 'user', content: prompt }],
                  max_tokens: 24, seed: 7, temperature: 0.8 };
  const c1 = await client.chat.completions.create(chatP);
  check('chat.completion shape', c1.object === 'chat.completion' && c1.choices.length === 1 &&
        c1.choices[0].message.role === 'assistant' && typeof c1.choices[0].message.content === 'string' &&
        ['stop', 'length'].includes(c1.choices[0].finish_reason) && c1.id.startsWith('chatcmpl-'), c1);
  check('chat usage', c1.usage.completion_tokens >= 1 && c1.usage.completion_tokens <= 24 &&
        c1.usage.total_tokens === c1.usage.prompt_tokens + c1.usage.completion_tokens, c1.usage);
  const s1 = await streamChat(chatP);
  check('chat stream = whole', s1.text === c1.choices[0].message.content && s1.finish === c1.choices[0].finish_reason &&
        s1.role === 'assistant', [s1.text, c1.choices[0].message.content]);
  check('chat stream usage', s1.usage && s1.usage.completion_tokens === c1.usage.completion_tokens &&
        s1.usage.prompt_tokens === c1.usage.prompt_tokens, s1.usage);

  // completions, whole and streamed (greedy: the known story)
  const g = await client.completions.create({ model, prompt, max_tokens: 30, temperature: 0 });
  check('completion greedy', g.object === 'text_completion' && g.choices[0].text === greedy &&
        g.choices[0].finish_reason === 'length' && g.usage.completion_tokens === 30 && g.usage.prompt_tokens === 5,
        g.choices[0]);
  const gs = await streamCompletion({ model, prompt, max_tokens: 30, temperature: 0 });
  check('completion stream = whole', gs.text === greedy && gs.finish === 'length', gs);

  // stop strings, one and several, matched across token boundaries
  const st = await client.completions.create({ model, prompt, max_tokens: 30, temperature: 0, stop: 'girl' });
  check('stop string', st.choices[0].text === ', there was a little ' && st.choices[0].finish_reason === 'stop',
        st.choices[0]);
  const st2 = await client.completions.create({ model, prompt, max_tokens: 30, temperature: 0, stop: ['zzz', 'le gi'] });
  check('stop across tokens', st2.choices[0].text === ', there was a litt' && st2.choices[0].finish_reason === 'stop',
        st2.choices[0]);
  const st3 = await streamCompletion({ model, prompt, max_tokens: 30, temperature: 0, stop: ['zzz', 'le gi'] });
  check('stop across tokens, streamed', st3.text === ', there was a litt' && st3.finish === 'stop', st3);
  const st4 = await chatText({ model, messages: [{ role: 'user', content: prompt }], max_tokens: 40, temperature: 0,
                               stop: ['.'] });
  check('chat stop', !st4.includes('.'), st4);

  // max_tokens
  const mt = await client.completions.create({ model, prompt, max_tokens: 7, temperature: 0.9, seed: 3 });
  check('max_tokens', mt.usage.completion_tokens === 7 && mt.choices[0].finish_reason === 'length', mt.usage);

  // seeds: the same seed the same text, another seed another text
  const sp = { model, prompt: 'The dog', max_tokens: 40, temperature: 1.0, top_k: 0, top_p: 1, min_p: 0 };
  const a = await client.completions.create({ ...sp, seed: 42 });
  const b = await client.completions.create({ ...sp, seed: 42 });
  const c = await client.completions.create({ ...sp, seed: 43 });
  check('seed reproducible', a.choices[0].text === b.choices[0].text, [a.choices[0].text, b.choices[0].text]);
  check('seed matters', a.choices[0].text !== c.choices[0].text, [a.choices[0].text, c.choices[0].text]);

  // logprobs: chat (content entries) and completions (tokens, top_logprobs maps)
  const lc = await client.chat.completions.create({ ...chatP, temperature: 0, logprobs: true, top_logprobs: 3 });
  const content = lc.choices[0].logprobs && lc.choices[0].logprobs.content;
  const sorted = (t) => t.every((x, i) => i === 0 || t[i - 1].logprob >= x.logprob);
  check('chat logprobs', content && content.length === lc.usage.completion_tokens &&
        content.every(e => typeof e.token === 'string' && e.logprob <= 0 && Array.isArray(e.bytes) &&
                      e.top_logprobs.length === 3 && sorted(e.top_logprobs) && e.top_logprobs[0].token === e.token &&
                      e.top_logprobs[0].logprob === e.logprob) &&
        content.map(e => e.token).join('') === lc.choices[0].message.content, content && content.slice(0, 2));
  const ls = await streamChat({ ...chatP, temperature: 0, logprobs: true, top_logprobs: 3 });
  check('chat logprobs streamed', ls.lp.length === content.length &&
        ls.lp.every((e, i) => e.token === content[i].token && e.logprob === content[i].logprob), ls.lp.slice(0, 2));
  const lq = await client.completions.create({ model, prompt, max_tokens: 10, temperature: 0, logprobs: 2 });
  const L = lq.choices[0].logprobs;
  check('completion logprobs', L && L.tokens.length === 10 && L.token_logprobs.length === 10 &&
        L.top_logprobs.length === 10 && L.top_logprobs.every(m => Object.keys(m).length >= 1) &&
        L.tokens.join('') === lq.choices[0].text && L.text_offset[0] === 0 &&
        L.token_logprobs.every(x => x <= 0), L);

  // batching does not change results: 8 concurrent streams equal their solo runs
  const ps = [1, 2, 3, 4, 5, 6, 7, 8].map(seed => ({ model, prompt: 'Lily and Tom', max_tokens: 48, temperature: 0.8, seed }));
  const solo = [];
  for (const p of ps) solo.push((await client.completions.create(p)).choices[0].text);
  const together = await Promise.all(ps.map(p => streamCompletion(p)));
  check('8 concurrent streams = solo', together.every((t, i) => t.text === solo[i]),
        together.map((t, i) => [t.text, solo[i]]).filter(x => x[0] !== x[1]));

  // errors: unsupported value, bad range, unknown model field type, key
  await expectError('n = 2 refused', 400, () => client.completions.create({ model, prompt, n: 2 }), "'n'");
  await expectError('max_tokens 0 refused', 400, () => client.chat.completions.create({ ...chatP, max_tokens: 0 }),
                    'max_tokens');
  await expectError('prompt too long refused', 400,
                    () => client.completions.create({ model, prompt: 'a b c d e f g h '.repeat(80), max_tokens: 4 }),
                    'prompt');
  const bad = new OpenAI({ baseURL, apiKey: apiKey + 'x', maxRetries: 0 });
  await expectError('wrong key refused', 401, () => bad.models.list());
}

main().then(() => { console.log('done'); process.exit(failed ? 1 : 0); },
            e => { console.log('FAIL exception: ' + (e && e.stack || e)); process.exit(1); });
