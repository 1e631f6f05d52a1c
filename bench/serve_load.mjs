#!/usr/bin/env node
// serve_load.mjs — a load generator for OpenAI-compatible servers (q35
// serve, llama-server), with node's own http module (no packages).
//
//   node bench/serve_load.mjs --url http://127.0.0.1:PORT [--clients 64]
//        [--duration S | --requests N] [--prompt-words A:B | --prompt-tokens N --vocab V]
//        [--max-tokens A:B] [--chat F] [--ignore-eos] [--temperature T] [--seed S]
//        [--pid PID] [--api-key KEY] [--json FILE] [--quiet] [--ban-tokens A:B]
//
// Each client sends streamed requests one after another (keep-alive) until
// the duration is over (or N requests each): a random prompt (A..B words of
// a fixed list, or N random token ids), random max_tokens in A..B, a
// fraction F of them chat completions. Every response is checked: status
// 200, Server-Sent Events "data: {json}" each parsing (":" comments skipped), one id, exactly one
// finish_reason in the last choice chunk, the usage chunk, "data: [DONE]"
// last; finish_reason "length" means exactly max_tokens tokens. It reports
// requests, errors, generated tokens and tokens/s, the p50/p99 time to
// first token and time between tokens (between content events), each
// stream's own rate, the rate of all streams together while every one
// generates (between the last stream's first and the first stream's last
// content event: the decode rate of N concurrent streams, without the
// prompts), and with --pid the server's RSS sampled every second
// (start, after the first quarter, end, max). Exit status 1 on any error.
// --ban-tokens A:B sends logit_bias -100 for token ids A..B (llama-server:
// its output parser fails a stream whose text is not valid UTF-8, which a
// random-weight model's byte tokens produce; q35 serve sends U+FFFD).
import http from 'node:http';
import fs from 'node:fs';

const opt = { clients: 64, duration: 0, requests: 0, 'prompt-words': '4:64', 'prompt-tokens': 0, vocab: 32000,
              'max-tokens': '16:128', chat: 0.5, 'ignore-eos': false, temperature: 0.8, seed: 1, pid: 0,
              'api-key': '', json: '', quiet: false, url: '', 'ban-tokens': '' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const k = argv[i].replace(/^--/, '');
  if (!(k in opt)) { console.error(`serve_load: unknown flag ${argv[i]}`); process.exit(2); }
  if (typeof opt[k] === 'boolean') opt[k] = true;
  else if (i + 1 >= argv.length) { console.error(`serve_load: ${argv[i]} needs a value`); process.exit(2); }
  else opt[k] = typeof opt[k] === 'number' ? Number(argv[++i]) : argv[++i];
}
if (!opt.url || (!opt.duration && !opt.requests)) {
  console.error('serve_load: give --url and --duration S or --requests N');
  process.exit(2);
}
const range = (s) => { const [a, b] = String(s).split(':').map(Number); return [a, b === undefined ? a : b]; };
const [pw0, pw1] = range(opt['prompt-words']), [mt0, mt1] = range(opt['max-tokens']);

// a small deterministic generator (xorshift32), so runs are repeatable
let rs = (opt.seed * 2654435761) >>> 0 || 1;
const rnd = () => { rs ^= rs << 13; rs >>>= 0; rs ^= rs >>> 17; rs ^= rs << 5; rs >>>= 0; return rs / 4294967296; };
const rint = (a, b) => a + Math.floor(rnd() * (b - a + 1));
const WORDS = ('once upon a time there was little girl named lily she loved to play outside in the park one day ' +
  'her mom said we go to store and buy some apples tom dog cat ball red big happy sad tree sun sky run jump ' +
  'friend house garden flower bird fish water boat car toy box cake smile laugh cry help share kind brave ' +
  'small tall blue green yellow bear rabbit forest river hill school book story night moon star dream sleep').split(' ');

const url = new URL(opt.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: opt.clients });
const t_start = performance.now();
const deadline = opt.duration ? t_start + opt.duration * 1000 : Infinity;
const st = { ok: 0, errors: 0, rejected: 0, tokens: 0, ttft: [], itl: [], rate: [], msgs: [], streams: [] };

function fail(msg) {
  st.errors++;
  if (st.msgs.length < 10) st.msgs.push(msg);
}

function request() {
  const chat = rnd() < opt.chat;
  const max_tokens = rint(mt0, mt1);
  let prompt;
  if (opt['prompt-tokens'] > 0) prompt = Array.from({ length: opt['prompt-tokens'] }, () => rint(3, opt.vocab - 1));
  else prompt = Array.from({ length: rint(pw0, pw1) }, () => WORDS[rint(0, WORDS.length - 1)]).join(' ');
  const body = { max_tokens, stream: true, stream_options: { include_usage: true }, temperature: opt.temperature,
                 seed: rint(1, 1e9) };
  if (opt['ignore-eos']) body.ignore_eos = true;
  if (opt['ban-tokens']) {
    const [b0, b1] = range(opt['ban-tokens']);
    body.logit_bias = {};
    for (let t = b0; t <= b1; t++) body.logit_bias[t] = -100;
  }
  if (chat) body.messages = [{ role: 'user', content: Array.isArray(prompt) ? 'hello' : prompt }];
  else body.prompt = prompt;
  return { chat, max_tokens, path: chat ? '/v1/chat/completions' : '/v1/completions', body: JSON.stringify(body) };
}

// One request; resolves when it is over (never rejects).
function one() {
  const rq = request();
  return new Promise((resolve) => {
    const t0 = performance.now();
    const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(rq.body) };
    if (opt['api-key']) headers.Authorization = 'Bearer ' + opt['api-key'];
    const req = http.request({ host: url.hostname, port: url.port, path: rq.path, method: 'POST', agent, headers }, (res) => {
      if (res.statusCode === 503) { st.rejected++; res.resume(); res.on('end', resolve); return; }
      if (res.statusCode !== 200 || !String(res.headers['content-type']).startsWith('text/event-stream')) {
        let body = '';
        res.on('data', (c) => { body += c; });
        res.on('end', () => { fail(`status ${res.statusCode}: ${body.slice(0, 200)}`); resolve(); });
        return;
      }
      let buf = Buffer.alloc(0), id = null, finish = null, usage = null, done = false, bad = null, contents = 0;
      let t_first = 0, t_last = 0;
      const times = [];
      const event = (raw) => {
        if (bad) return;
        const s = raw.toString('utf8');
        if (s.startsWith(':')) return; // an SSE comment (llama-server's keep-alive while prompts are read)
        if (done) { bad = 'data after [DONE]'; return; }
        if (!s.startsWith('data: ')) { bad = 'not a data line: ' + s.slice(0, 80); return; }
        const d = s.slice(6);
        if (d === '[DONE]') { done = true; return; }
        let j;
        try { j = JSON.parse(d); } catch (e) { bad = 'bad JSON: ' + d.slice(0, 80); return; }
        if (j.error) { bad = 'error event: ' + JSON.stringify(j.error); return; }
        if (id === null) id = j.id; else if (j.id !== id) { bad = 'id changed'; return; }
        if (j.usage) usage = j.usage;
        if (!Array.isArray(j.choices)) { bad = 'no choices'; return; }
        if (!j.choices.length) return;
        if (finish) { bad = 'a choice chunk after the finish'; return; }
        const c = j.choices[0];
        const text = rq.chat ? c.delta && c.delta.content : c.text;
        if (text) {
          const t = performance.now();
          if (!t_first) t_first = t; else st.itl.push(t - t_last);
          t_last = t;
          times.push(t);
          contents++;
        }
        if (c.finish_reason) finish = c.finish_reason;
      };
      res.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        let k;
        while ((k = buf.indexOf('\n\n')) >= 0) { event(buf.subarray(0, k)); buf = buf.subarray(k + 2); }
      });
      res.on('end', () => {
        if (buf.length) bad = bad || 'bytes after the last event';
        if (!bad && !done) bad = 'no [DONE]';
        if (!bad && !['stop', 'length'].includes(finish)) bad = 'finish_reason ' + finish;
        if (!bad && !usage) bad = 'no usage chunk';
        if (!bad && finish === 'length' && usage.completion_tokens !== rq.max_tokens)
          bad = `length after ${usage.completion_tokens} of ${rq.max_tokens} tokens`;
        if (!bad && (usage.completion_tokens > rq.max_tokens || contents > usage.completion_tokens))
          bad = `${contents} content events, ${usage.completion_tokens} tokens, max ${rq.max_tokens}`;
        if (bad) fail(bad);
        else {
          st.ok++;
          st.tokens += usage.completion_tokens;
          if (t_first) st.ttft.push(t_first - t0);
          if (contents > 1) {
            st.rate.push((contents - 1) / ((t_last - t_first) / 1000));
            st.streams.push(times);
          }
        }
        resolve();
      });
      res.on('error', (e) => { fail('response: ' + e.message); resolve(); });
    });
    req.on('error', (e) => { fail('request: ' + e.message); resolve(); });
    req.end(rq.body);
  });
}

async function client() {
  for (let n = 0; (!opt.requests || n < opt.requests) && performance.now() < deadline; n++) await one();
}

// RSS of the server, sampled every second
const rss = [];
const sample = () => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${opt.pid}/status`, 'utf8'));
    if (m) rss.push([(performance.now() - t_start) / 1000, Number(m[1]) / 1024]);
  } catch (e) { /* gone: the requests will fail */ }
};
let timer = null;
if (opt.pid) { sample(); timer = setInterval(sample, 1000); }

const pct = (a, p) => { if (!a.length) return 0; const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };
await Promise.all(Array.from({ length: opt.clients }, client));
const wall = (performance.now() - t_start) / 1000;
if (timer) { clearInterval(timer); sample(); }
agent.destroy();

// the aggregate rate while every stream generates: content events of all
// streams between the last stream's first and the first stream's last
// event, over that window (one stream: its own rate, first to last event)
let lo = -Infinity, hi = Infinity;
for (const t of st.streams) { lo = Math.max(lo, t[0]); hi = Math.min(hi, t[t.length - 1]); }
let in_window = 0;
for (const t of st.streams) for (const x of t) if (x > lo && x <= hi) in_window++;
const concurrent = st.streams.length && hi > lo ? in_window / ((hi - lo) / 1000) : 0;

const out = {
  clients: opt.clients, seconds: +wall.toFixed(2), requests: st.ok + st.errors + st.rejected, ok: st.ok,
  errors: st.errors, rejected: st.rejected, tokens: st.tokens, tokens_per_s: +(st.tokens / wall).toFixed(2),
  ttft_ms_p50: +pct(st.ttft, 50).toFixed(1), ttft_ms_p99: +pct(st.ttft, 99).toFixed(1),
  itl_ms_p50: +pct(st.itl, 50).toFixed(1), itl_ms_p99: +pct(st.itl, 99).toFixed(1),
  stream_tokens_per_s: +(st.rate.reduce((a, b) => a + b, 0) / (st.rate.length || 1)).toFixed(2),
  concurrent_tokens_per_s: +concurrent.toFixed(2), concurrent_seconds: +(hi > lo ? (hi - lo) / 1000 : 0).toFixed(2),
};
if (rss.length) {
  const q = rss.find(r => r[0] >= wall / 4) || rss[rss.length - 1];
  Object.assign(out, { rss_mib_start: +rss[0][1].toFixed(1), rss_mib_quarter: +q[1].toFixed(1),
                       rss_mib_end: +rss[rss.length - 1][1].toFixed(1),
                       rss_mib_max: +Math.max(...rss.map(r => r[1])).toFixed(1), rss_samples: rss.length,
                       rss_series: rss.map(([t, m]) => [+t.toFixed(1), +m.toFixed(2)]) });
}
if (!opt.quiet) {
  console.log(`requests ${out.requests} (ok ${out.ok}, errors ${out.errors}, rejected ${out.rejected}) in ${out.seconds} s ` +
              `from ${out.clients} clients; generated ${out.tokens} tokens, ${out.tokens_per_s} tokens/s`);
  console.log(`time to first token ms: p50 ${out.ttft_ms_p50}, p99 ${out.ttft_ms_p99}; between tokens ms: ` +
              `p50 ${out.itl_ms_p50}, p99 ${out.itl_ms_p99}; per stream ${out.stream_tokens_per_s} tokens/s` +
              (out.concurrent_seconds > 0 ? `; all streams together ${out.concurrent_tokens_per_s} tokens/s over ` +
               `${out.concurrent_seconds} s` : '; no stretch where every stream generated at once'));
  if (rss.length)
    console.log(`server RSS MiB: start ${out.rss_mib_start}, after a quarter ${out.rss_mib_quarter}, end ` +
                `${out.rss_mib_end}, max ${out.rss_mib_max} (${out.rss_samples} samples)`);
  for (const m of st.msgs) console.log('error: ' + m);
}
if (opt.json) fs.writeFileSync(opt.json, JSON.stringify(out) + '\n');
process.exit(st.errors || (opt.pid && !rss.length) ? 1 : 0);
