/* test_server.c — q35 serve (src/server).
 *
 * The parts without a server: the request parser (every field's types and
 * ranges, unsupported values), stop strings across pieces, UTF-8
 * boundaries and cleaning. Then servers started on a free loopback port:
 * every bad input of issue 17 (malformed JSON, wrong types, a body over
 * the limit, max_tokens below 1 or beyond the context, a prompt longer
 * than the context, unknown endpoints, wrong or missing API keys, a client
 * that stalls after its headers, 1000 connections opened and dropped),
 * the endpoints, the SSE framing byte for byte through curl, stop
 * strings, seeds and log-probabilities, batching that does not change
 * results (8 concurrent streams equal their solo runs), a full queue
 * (503 + Retry-After), a client going away mid-stream (its job cancelled,
 * the slot freed) and shutdown on SIGTERM (the stream in flight finishes)
 * and a second SIGINT (cancelled). Then the official openai client
 * (tests/serve_openai.cjs) and a short run of the load generator
 * (bench/serve_load.mjs), both with node; they skip without it. */
#define _GNU_SOURCE /* strcasestr */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <strings.h>

#include "harness.h"
#include "srvrun.h"

#include "server/request.h"
#include "server/text.h"

static char tmpdir[256];
static const char *bin;
static const char *KEY = "sekrit-key";
/* stories260K's first 30 greedy tokens after "Once upon a time" (llama2.c's reference) */
#define GREEDY30 ", there was a little girl named Lily. She loved to play outside in the park. One day,"

/* ---- without a server ---------------------------------------------------------- */

static void test_parser(void) {
    srv_request r;
    srv_reject why;
    const char *ok_body = "{\"model\":\"x\",\"prompt\":\"Once\",\"max_tokens\":5,\"temperature\":0.5,\"top_p\":0.9,"
                          "\"top_k\":7,\"min_p\":0.1,\"seed\":-3,\"stop\":[\"a\",\"\",\"bc\"],\"stream\":true,"
                          "\"stream_options\":{\"include_usage\":true},\"logprobs\":2,\"presence_penalty\":0.5,"
                          "\"frequency_penalty\":-0.5,\"repeat_penalty\":1.1,\"n\":1,\"user\":\"u\",\"unknown\":[1]}";
    CHECKF(srv_request_parse(&r, SRV_COMPLETION, ok_body, strlen(ok_body), &why) == 0, "parse: %s", why.msg);
    CHECK(r.prompt && !strcmp(r.prompt, "Once") && r.max_tokens == 5 && r.sp.temperature == 0.5f &&
          r.sp.top_p == 0.9f && r.sp.top_k == 7 && r.sp.min_p == 0.1f && r.have_seed &&
          r.sp.seed == (uint64_t)(int64_t)-3 && r.n_stop == 2 && !strcmp(r.stop[1], "bc") && r.stream &&
          r.include_usage && r.logprobs && r.top_logprobs == 2 && r.presence_penalty == 0.5f &&
          r.frequency_penalty == -0.5f && r.sp.repeat_penalty == 1.1f);
    srv_request_free(&r);
    const char *ids = "{\"prompt\":[[1,2,3]],\"max_tokens\":null}";
    CHECK(srv_request_parse(&r, SRV_COMPLETION, ids, strlen(ids), &why) == 0 && r.n_prompt_ids == 3 &&
          r.prompt_ids[2] == 3 && r.max_tokens == -1);
    srv_request_free(&r);
    const char *chat = "{\"messages\":[{\"role\":\"system\",\"content\":null},{\"role\":\"user\",\"content\":"
                       "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],"
                       "\"logprobs\":true,\"top_logprobs\":3,\"max_completion_tokens\":9}";
    CHECKF(srv_request_parse(&r, SRV_CHAT, chat, strlen(chat), &why) == 0, "chat: %s", why.msg);
    CHECK(r.n_msgs == 2 && !strcmp(r.msgs[0].content, "") && !strcmp(r.msgs[1].content, "ab") && r.logprobs &&
          r.top_logprobs == 3 && r.max_tokens == 9);
    srv_request_free(&r);

    /* refused, naming the field */
    static const struct {
        int kind;
        const char *body, *param;
    } bad[] = {
        {SRV_COMPLETION, "{\"prompt\": \"x\",", ""},
        {SRV_COMPLETION, "[1, 2]", ""},
        {SRV_COMPLETION, "{}", "prompt"},
        {SRV_COMPLETION, "{\"prompt\": 5}", "prompt"},
        {SRV_COMPLETION, "{\"prompt\": []}", "prompt"},
        {SRV_COMPLETION, "{\"prompt\": [\"a\", \"b\"]}", "prompt"},
        {SRV_COMPLETION, "{\"prompt\": [1, -2]}", "prompt"},
        {SRV_COMPLETION, "{\"prompt\": [1, 2.5]}", "prompt"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"model\": 3}", "model"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"max_tokens\": \"10\"}", "max_tokens"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"max_tokens\": 0}", "max_tokens"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"max_tokens\": -1}", "max_tokens"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"max_tokens\": 1.5}", "max_tokens"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"temperature\": \"hot\"}", "temperature"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"temperature\": -1}", "temperature"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"top_p\": 1.5}", "top_p"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"top_k\": 2.5}", "top_k"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"min_p\": 2}", "min_p"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"seed\": \"1\"}", "seed"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"seed\": 1.5}", "seed"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"stop\": 3}", "stop"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"stop\": [\"a\", 3]}", "stop"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"stream\": \"yes\"}", "stream"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"stream_options\": 1}", "stream_options"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"logprobs\": 50}", "logprobs"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"presence_penalty\": 3}", "presence_penalty"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"frequency_penalty\": \"a\"}", "frequency_penalty"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"repeat_penalty\": 0}", "repeat_penalty"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"n\": 2}", "n"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"best_of\": 3}", "best_of"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"echo\": true}", "echo"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"suffix\": \"y\"}", "suffix"},
        {SRV_COMPLETION, "{\"prompt\": \"x\", \"logit_bias\": {\"1\": 5}}", "logit_bias"},
        {SRV_CHAT, "{\"messages\": \"hi\"}", "messages"},
        {SRV_CHAT, "{\"messages\": []}", "messages"},
        {SRV_CHAT, "{\"messages\": [{\"content\": \"hi\"}]}", "messages"},
        {SRV_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages"},
        {SRV_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", "messages"},
        {SRV_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": 1}", "logprobs"},
        {SRV_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 2}", "top_logprobs"},
        {SRV_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{}]}", "tools"},
        {SRV_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": "
                   "{\"type\": \"json_object\"}}", "response_format"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const int rc = srv_request_parse(&r, bad[i].kind, bad[i].body, strlen(bad[i].body), &why);
        CHECKF(rc == -1 && !strcmp(why.param, bad[i].param) && why.msg[0] && !strchr(why.msg, '\n'),
               "%s: rc %d, param '%s', message '%s'", bad[i].body, rc, why.param, why.msg);
        if (rc == 0) srv_request_free(&r);
    }
}

static void test_text(void) {
    char *stops[] = {"le gi", "girl", "\xc3\xa9t\xc3\xa9"};
    const char *t = ", there was a little girl";
    CHECK(srv_stop_find(t, strlen(t), 0, stops, 2) == 18); /* "le gi" before "girl" */
    CHECK(srv_stop_find(t, strlen(t), 19, stops, 2) == 21);
    CHECK(srv_stop_find(t, 19, 0, stops, 2) == (size_t)-1);
    CHECK(srv_stop_partial(", there was a litt", 18, stops, 2) == 0);
    CHECK(srv_stop_partial(", there was a littl", 19, stops, 2) == 1);  /* "l" */
    CHECK(srv_stop_partial(", there was a little g", 22, stops, 2) == 4); /* "le g" */
    CHECK(srv_stop_partial("gir", 3, stops, 2) == 3);
    CHECK(srv_stop_partial("\xc3\xa9t\xc3", 4, stops + 2, 1) == 4);
    /* whole characters only; bytes that can never complete are not held */
    CHECK(srv_utf8_whole("ab\xc3", 3) == 2);
    CHECK(srv_utf8_whole("ab\xe2\x82", 4) == 2);
    CHECK(srv_utf8_whole("ab\xe2\x82\xac", 5) == 5);
    CHECK(srv_utf8_whole("ab\xf0\x9f\x98", 5) == 2);
    CHECK(srv_utf8_whole("ab\x80", 3) == 3);
    CHECK(srv_utf8_whole("ab\xff", 3) == 3);
    CHECK(srv_utf8_whole("", 0) == 0);
    size_t n;
    char *c = srv_utf8_clean("a\xff\xc3\xa9\xe2\x82z\xed\xa0\x80\xc0\xaf", 12, &n);
    CHECKF(c && !strcmp(c, "a\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                           "\xef\xbf\xbd\xef\xbf\xbd") && n == strlen(c),
           "cleaned: %s", c);
    free(c);
}

/* ---- helpers ------------------------------------------------------------------- */

/* The field at a dotted path of a JSON body ("error.param", "choices.0.text"). */
static const cJSON *jget(const cJSON *j, const char *path) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && j; k = strtok_r(NULL, ".", &save))
        j = cJSON_IsArray(j) ? cJSON_GetArrayItem(j, atoi(k)) : cJSON_GetObjectItemCaseSensitive(j, k);
    return j;
}
static const char *jstr(const cJSON *j, const char *path) {
    const cJSON *f = jget(j, path);
    return cJSON_IsString(f) ? f->valuestring : "";
}
static double jnum(const cJSON *j, const char *path) {
    const cJSON *f = jget(j, path);
    return cJSON_IsNumber(f) ? f->valuedouble : -1e300;
}

/* A request whose answer is an OpenAI error object: status, error.param
 * and a message mentioning `mention`. */
static void expect_error(int port, const char *what, const char *method, const char *path, const char *key,
                         const char *body, int status, const char *param, const char *mention) {
    reply r;
    CHECKF(http_req(port, method, path, key, body, &r) == 0, "%s: no response", what);
    cJSON *j = cJSON_Parse(r.body ? r.body : "");
    CHECKF(r.status == status, "%s: status %d, want %d (%s)", what, r.status, status, r.body);
    CHECKF(j && cJSON_IsString(jget(j, "error.message")) && cJSON_IsString(jget(j, "error.type")),
           "%s: not an error object: %s", what, r.body);
    const cJSON *p = jget(j, "error.param");
    if (param) CHECKF(cJSON_IsString(p) && !strcmp(p->valuestring, param), "%s: param %s, want %s", what, r.body, param);
    if (mention) CHECKF(strstr(jstr(j, "error.message"), mention) != NULL, "%s: message does not name '%s': %s", what,
                        mention, r.body);
    printf("  %-40s -> %d %s\n", what, r.status, jstr(j, "error.message"));
    cJSON_Delete(j);
    reply_free(&r);
}

/* A completion's JSON (NULL on a failure, recorded). */
static cJSON *complete(int port, const char *path, const char *body) {
    reply r;
    const int rc = http_req(port, "POST", path, KEY, body, &r);
    CHECKF(rc == 0 && r.status == 200, "%s %s: status %d %s", path, body, r.status, r.body);
    cJSON *j = rc == 0 && r.status == 200 ? cJSON_Parse(r.body) : NULL;
    reply_free(&r);
    return j;
}

/* The value of a metric in /metrics (-1 when absent). */
static double metric(int port, const char *name) { return server_metric(port, KEY, name); }

static int have(const char *prog) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

/* Number of threads of process pid. */
static int threads_of(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8)) n = atoi(line + 8);
    if (f) fclose(f);
    return n;
}

/* The file at path into buf (size bytes, NUL-terminated; "" if it cannot
 * be read); returns the bytes read. */
static size_t read_text(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "rb");
    const size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
    return n;
}

/* Threads of process pid once they are down to want, polled for up to 10 s
 * (a closed connection's thread ends a moment after its socket). */
static int threads_down_to(pid_t pid, int want) {
    int n = threads_of(pid);
    for (int i = 0; i < 100 && n > want; i++) {
        usleep(100000);
        n = threads_of(pid);
    }
    return n;
}

/* ---- the main server's tests ------------------------------------------------------ */

static void test_endpoints(int port) {
    reply r;
    CHECK(http_req(port, "GET", "/health", NULL, NULL, &r) == 0 && r.status == 200 && strstr(r.body, "ok"));
    reply_free(&r);
    CHECK(http_req(port, "GET", "/v1/models", KEY, NULL, &r) == 0 && r.status == 200 &&
          strstr(r.body, "\"stories260K.bin\""));
    reply_free(&r);
    CHECK(http_req(port, "POST", "/tokenize", KEY, "{\"content\":\"Once upon a time\",\"add_special\":true}", &r) == 0 &&
          r.status == 200);
    cJSON *j = cJSON_Parse(r.body ? r.body : "");
    const cJSON *toks = jget(j, "tokens");
    CHECKF(cJSON_GetArraySize(toks) == 5 && jnum(j, "tokens.0") == 1, "tokenize: %s", r.body);
    char *arr = cJSON_PrintUnformatted(toks), body[512];
    snprintf(body, sizeof body, "{\"tokens\":%s}", arr ? arr : "[]");
    free(arr);
    cJSON_Delete(j);
    reply_free(&r);
    CHECK(http_req(port, "POST", "/detokenize", KEY, body, &r) == 0 && r.status == 200 &&
          strstr(r.body, "\"content\":\"Once upon a time\""));
    reply_free(&r);
    CHECK(http_req(port, "GET", "/metrics", KEY, NULL, &r) == 0 && r.status == 200);
    char ct[128];
    CHECK(reply_header(&r, "Content-Type", ct, sizeof ct) && strstr(ct, "text/plain"));
    const char *names[] = {"q35_requests_total", "q35_prompt_tokens_total", "q35_tokens_predicted_total",
                           "q35_predicted_tokens_per_second", "q35_requests_deferred", "q35_kv_cache_usage_ratio",
                           "q35_requests_processing", "q35_steps_total"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECKF(r.body && strstr(r.body, names[i]), "metrics lack %s", names[i]);
    reply_free(&r);
}

static void test_bad_input(const server *s) {
    const int port = s->port;
    const char *C = "/v1/completions", *CH = "/v1/chat/completions";
    printf("bad input:\n");
    expect_error(port, "malformed JSON", "POST", C, KEY, "{\"prompt\": \"x\",", 400, NULL, "JSON");
    expect_error(port, "not an object", "POST", C, KEY, "\"x\"", 400, NULL, "object");
    expect_error(port, "empty body", "POST", C, KEY, "", 400, NULL, "JSON");
    expect_error(port, "prompt of the wrong type", "POST", C, KEY, "{\"prompt\": 5}", 400, "prompt", "prompt");
    expect_error(port, "max_tokens a string", "POST", C, KEY, "{\"prompt\": \"x\", \"max_tokens\": \"9\"}", 400,
                 "max_tokens", "integer");
    expect_error(port, "temperature a string", "POST", C, KEY, "{\"prompt\": \"x\", \"temperature\": \"hot\"}", 400,
                 "temperature", "number");
    expect_error(port, "stream a string", "POST", C, KEY, "{\"prompt\": \"x\", \"stream\": \"yes\"}", 400, "stream",
                 NULL);
    expect_error(port, "messages a string", "POST", CH, KEY, "{\"messages\": \"hi\"}", 400, "messages", NULL);
    expect_error(port, "stop a number", "POST", C, KEY, "{\"prompt\": \"x\", \"stop\": 3}", 400, "stop", NULL);
    expect_error(port, "token id past the vocabulary", "POST", C, KEY, "{\"prompt\": [1, 600]}", 400, "prompt",
                 "600");
    expect_error(port, "n = 2 (unsupported)", "POST", C, KEY, "{\"prompt\": \"x\", \"n\": 2}", 400, "n", NULL);
    expect_error(port, "max_tokens 0", "POST", C, KEY, "{\"prompt\": \"x\", \"max_tokens\": 0}", 400, "max_tokens",
                 "at least 1");
    expect_error(port, "max_tokens -5", "POST", CH, KEY,
                 "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": -5}", 400, "max_tokens",
                 NULL);
    expect_error(port, "max_tokens beyond the context", "POST", C, KEY,
                 "{\"prompt\": \"Once upon a time\", \"max_tokens\": 252}", 400, "max_tokens", "beyond the context");
    /* 5 prompt tokens + 251 fit the 256 positions */
    cJSON *j = complete(port, C, "{\"prompt\": \"Once upon a time\", \"max_tokens\": 251, \"ignore_eos\": true}");
    CHECKF(jnum(j, "usage.completion_tokens") == 251 && !strcmp(jstr(j, "choices.0.finish_reason"), "length"),
           "a whole context's generation");
    cJSON_Delete(j);
    char *long_prompt = malloc(8192);
    strcpy(long_prompt, "{\"prompt\": \"");
    for (int i = 0; i < 300; i++) strcat(long_prompt, "the cat ");
    strcat(long_prompt, "\"}");
    expect_error(port, "prompt longer than the context", "POST", C, KEY, long_prompt, 400, "prompt", "context");
    free(long_prompt);
    expect_error(port, "unknown endpoint", "GET", "/v1/nothing", KEY, NULL, 404, NULL, "/v1/nothing");
    expect_error(port, "unknown endpoint (POST)", "POST", "/v2/completions", KEY, "{}", 404, NULL, NULL);
    expect_error(port, "wrong method", "GET", C, KEY, NULL, 405, NULL, "GET");
    expect_error(port, "missing API key", "POST", C, NULL, "{\"prompt\": \"x\"}", 401, NULL, "API key");
    expect_error(port, "wrong API key", "POST", C, "sekrit-kez", "{\"prompt\": \"x\"}", 401, NULL, "API key");
    expect_error(port, "API key prefix", "GET", "/v1/models", "sekrit", NULL, 401, NULL, NULL);
    expect_error(port, "API key on /metrics", "GET", "/metrics", NULL, NULL, 401, NULL, NULL);

    /* a body over the limit: announced (Content-Length) and sent in chunks */
    const size_t big = (1u << 20) + 100;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    huge[big] = '\0';
    expect_error(port, "body over the limit", "POST", C, KEY, huge, 413, NULL, "limit");
    int fd = tcp_connect(port);
    char head[256];
    snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n"
             "Transfer-Encoding: chunked\r\n\r\n", C, KEY);
    int sent = fd >= 0 && send_all(fd, head, strlen(head)) == 0;
    for (size_t off = 0; sent && off < big; off += 65536) {
        const size_t k = big - off < 65536 ? big - off : 65536;
        char sz[32];
        snprintf(sz, sizeof sz, "%zx\r\n", k);
        sent = send_all(fd, sz, strlen(sz)) == 0 && send_all(fd, huge + off, k) == 0 && send_all(fd, "\r\n", 2) == 0;
    }
    if (sent) send_all(fd, "0\r\n\r\n", 5);
    size_t n;
    int closed;
    char *raw = fd >= 0 ? recv_all(fd, 60000, &n, &closed) : NULL;
    reply r;
    parse_reply(raw ? raw : "", raw ? n : 0, &r);
    CHECKF(r.status == 413, "chunked body over the limit: %s", raw ? raw : "(no connection)");
    printf("  %-40s -> %d %s\n", "chunked body over the limit", r.status, r.body ? r.body : "");
    reply_free(&r);
    free(raw);
    if (fd >= 0) close(fd);
    free(huge);

    /* garbage instead of HTTP: an error status or a closed connection, never a crash */
    fd = tcp_connect(port);
    const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n";
    if (fd >= 0) send_all(fd, garbage, sizeof garbage - 1);
    raw = fd >= 0 ? recv_all(fd, 10000, &n, &closed) : NULL;
    CHECKF(raw && (closed || strncmp(raw, "HTTP/1.1 4", 10) == 0), "garbage: %s", raw ? raw : "(no connection)");
    printf("  %-40s -> %.12s%s\n", "garbage instead of HTTP", raw && n ? raw : "", closed ? " (closed)" : "");
    free(raw);
    if (fd >= 0) close(fd);

    /* headers, then nothing: closed after --timeout (2 s) */
    fd = tcp_connect(port);
    snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 40\r\n\r\n{\"pro",
             C, KEY);
    const double t0 = srv_now();
    if (fd >= 0) send_all(fd, head, strlen(head));
    raw = fd >= 0 ? recv_all(fd, 20000, &n, &closed) : NULL;
    const double waited = srv_now() - t0;
    CHECKF(closed && waited >= 1.5 && waited < 15, "stalled body: closed %d after %.1f s", closed, waited);
    printf("  %-40s -> closed after %.1f s\n", "headers then a stall (--timeout 2)", waited);
    free(raw);
    if (fd >= 0) close(fd);
    fd = tcp_connect(port); /* a request line and half a header */
    if (fd >= 0) send_all(fd, "GET /health HTTP/1.1\r\nHo", 24);
    raw = fd >= 0 ? recv_all(fd, 20000, &n, &closed) : NULL;
    CHECKF(closed && n == 0, "stalled headers: closed %d, %zu bytes", closed, n);
    free(raw);
    if (fd >= 0) close(fd);

    /* 1000 connections opened and dropped: nothing, half a request, a whole
     * streamed request not read; then the server serves as before, with as
     * many threads as before */
    const int threads0 = threads_of(s->pid);
    const char *whole = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekrit-key\r\n"
                        "Content-Length: 58\r\n\r\n{\"prompt\":\"Once\",\"stream\":true,\"max_tokens\":40,\"seed\":9}";
    int opened = 0;
    for (int round = 0; round < 10; round++) {
        int fds[100];
        for (int i = 0; i < 100; i++) {
            fds[i] = tcp_connect(port);
            opened += fds[i] >= 0;
            if (fds[i] < 0) continue;
            if (i % 3 == 1) send_all(fds[i], whole, 60);
            if (i % 3 == 2) send_all(fds[i], whole, strlen(whole));
        }
        for (int i = 0; i < 100; i++)
            if (fds[i] >= 0) close(fds[i]);
    }
    CHECKF(opened == 1000, "opened %d of 1000 connections", opened);
    reply h;
    CHECK(http_req(port, "GET", "/health", NULL, NULL, &h) == 0 && h.status == 200);
    reply_free(&h);
    j = complete(port, C, "{\"prompt\": \"Once upon a time\", \"max_tokens\": 8, \"temperature\": 0}");
    CHECKF(j && !strcmp(jstr(j, "choices.0.text"), ", there was a little girl"),
           "after 1000 dropped connections: %s", jstr(j, "choices.0.text"));
    cJSON_Delete(j);
    const int threads1 = threads_down_to(s->pid, threads0);
    CHECKF(threads1 <= threads0, "threads before %d, after %d", threads0, threads1);
    printf("  %-40s -> served after; threads %d before, %d after\n", "1000 connections opened and dropped", threads0,
           threads1);
    CHECK(metric(port, "q35_requests_processing") == 0 && metric(port, "q35_requests_deferred") == 0);
}

static void test_generation(int port) {
    const char *C = "/v1/completions";
    /* greedy: llama2.c's story; stop strings across tokens; max_tokens */
    cJSON *j = complete(port, C, "{\"prompt\": \"Once upon a time\", \"max_tokens\": 30, \"temperature\": 0}");
    CHECKF(!strcmp(jstr(j, "choices.0.text"), GREEDY30), "greedy: %s", jstr(j, "choices.0.text"));
    CHECK(!strcmp(jstr(j, "object"), "text_completion") && jnum(j, "usage.prompt_tokens") == 5 &&
          jnum(j, "usage.completion_tokens") == 30 && jnum(j, "usage.total_tokens") == 35 &&
          !strcmp(jstr(j, "choices.0.finish_reason"), "length") && !strncmp(jstr(j, "id"), "cmpl-", 5));
    cJSON_Delete(j);
    j = complete(port, C, "{\"prompt\": \"Once upon a time\", \"max_tokens\": 20, \"temperature\": 0, "
                          "\"stop\": [\"zz\", \"le gi\"]}");
    CHECKF(!strcmp(jstr(j, "choices.0.text"), ", there was a litt") &&
               !strcmp(jstr(j, "choices.0.finish_reason"), "stop"),
           "stop across tokens: %s", jstr(j, "choices.0.text"));
    cJSON_Delete(j);
    /* penalties change a greedy text; seeds */
    j = complete(port, C, "{\"prompt\": \"Once upon a time\", \"max_tokens\": 30, \"temperature\": 0, "
                          "\"frequency_penalty\": 1.5, \"presence_penalty\": 1}");
    CHECKF(j && strcmp(jstr(j, "choices.0.text"), GREEDY30),
           "penalties changed nothing: %s", jstr(j, "choices.0.text"));
    cJSON_Delete(j);
    cJSON *a = complete(port, C, "{\"prompt\": \"The dog\", \"max_tokens\": 30, \"seed\": 5, \"temperature\": 1}");
    cJSON *b = complete(port, C, "{\"prompt\": \"The dog\", \"max_tokens\": 30, \"seed\": 5, \"temperature\": 1}");
    CHECK(a && b && !strcmp(jstr(a, "choices.0.text"), jstr(b, "choices.0.text")));
    cJSON_Delete(a);
    cJSON_Delete(b);
    /* log-probabilities: the chosen token first among the alternatives when greedy */
    j = complete(port, C, "{\"prompt\": \"Once upon a time\", \"max_tokens\": 6, \"temperature\": 0, \"logprobs\": 3}");
    const cJSON *lp = jget(j, "choices.0.logprobs");
    int ok = cJSON_GetArraySize(jget(lp, "tokens")) == 6 && cJSON_GetArraySize(jget(lp, "top_logprobs")) == 6;
    for (int i = 0; ok && i < 6; i++) {
        char path[64];
        snprintf(path, sizeof path, "top_logprobs.%d", i);
        const cJSON *top = jget(lp, path), *first = top ? top->child : NULL;
        snprintf(path, sizeof path, "tokens.%d", i);
        const char *tok = jstr(lp, path);
        snprintf(path, sizeof path, "token_logprobs.%d", i);
        ok = cJSON_GetArraySize(top) == 3 && first && !strcmp(first->string, tok) &&
             first->valuedouble == jnum(lp, path) && jnum(lp, path) <= 0;
    }
    CHECKF(ok, "completion logprobs");
    cJSON_Delete(j);
    /* chat through --chat-template (story.jinja: BOS, then the contents): the
     * completion of the same text */
    j = complete(port, "/v1/chat/completions",
                 "{\"messages\": [{\"role\": \"user\", \"content\": \"Once upon a \"}, {\"role\": \"user\", "
                 "\"content\": \"time\"}], \"max_tokens\": 30, \"temperature\": 0}");
    CHECKF(!strcmp(jstr(j, "object"), "chat.completion") && !strcmp(jstr(j, "choices.0.message.role"), "assistant") &&
               !strcmp(jstr(j, "choices.0.message.content"), GREEDY30) && jnum(j, "usage.prompt_tokens") == 5,
           "chat through the template: %s", jstr(j, "choices.0.message.content"));
    cJSON_Delete(j);
    /* the template refusing a conversation (raise_exception): 400 with its message */
    expect_error(port, "template refusing the conversation", "POST", "/v1/chat/completions", KEY,
                 "{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", 400, "messages", "no tool messages");
}

/* curl: the stream's bytes equal the events built from the whole
 * response's tokens, framing and JSON byte for byte. */
static void test_sse_curl(int port) {
    if (!have("curl")) {
        SKIP("no curl: SSE framing not checked");
        return;
    }
    const char *body = "{\"prompt\":\"Once upon a time\",\"max_tokens\":12,\"seed\":11,\"temperature\":0.7,"
                       "\"stream\":true}";
    char cmd[2048], out[300], hdr[300];
    snprintf(out, sizeof out, "%s/sse.out", tmpdir);
    snprintf(hdr, sizeof hdr, "%s/sse.hdr", tmpdir);
    snprintf(cmd, sizeof cmd, "curl -sS -N -D '%s' -o '%s' -H 'Authorization: Bearer %s' "
             "-H 'Content-Type: application/json' --data-binary '%s' http://127.0.0.1:%d/v1/completions",
             hdr, out, KEY, body, port);
    CHECK(system(cmd) == 0);
    char *got = calloc(1, 1 << 16), head[4096];
    const size_t n = read_text(out, got, 1 << 16);
    read_text(hdr, head, sizeof head);
    CHECKF(strstr(head, "HTTP/1.1 200") && strcasestr(head, "content-type: text/event-stream") &&
               strcasestr(head, "cache-control: no-cache") && strcasestr(head, "transfer-encoding: chunked") &&
               strcasestr(head, "connection: close"),
           "SSE headers: %s", head);
    /* every response ends its connection (and so its thread: http.c,
     * close_after), a whole one too */
    snprintf(cmd, sizeof cmd, "curl -sS -D '%s' -o /dev/null http://127.0.0.1:%d/health", hdr, port);
    CHECK(system(cmd) == 0);
    read_text(hdr, head, sizeof head);
    CHECKF(strstr(head, "HTTP/1.1 200") && strcasestr(head, "connection: close"), "/health headers: %s", head);
    /* the same request whole, with its tokens */
    cJSON *w = complete(port, "/v1/completions",
                        "{\"prompt\":\"Once upon a time\",\"max_tokens\":12,\"seed\":11,\"temperature\":0.7,"
                        "\"logprobs\":0}");
    cJSON *first = NULL;
    if (n > 6 && !strncmp(got, "data: ", 6)) {
        const char *e = strstr(got, "\n\n");
        first = e ? cJSON_ParseWithLength(got + 6, (size_t)(e - got - 6)) : NULL;
    }
    const char *id = jstr(first, "id");
    const double created = jnum(first, "created");
    char *want = calloc(1, 1 << 16);
    const cJSON *toks = jget(w, "choices.0.logprobs.tokens");
    for (const cJSON *t = toks ? toks->child : NULL; t; t = t->next) {
        cJSON *ev = cJSON_CreateObject(), *c = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "id", id);
        cJSON_AddStringToObject(ev, "object", "text_completion");
        cJSON_AddNumberToObject(ev, "created", created);
        cJSON_AddStringToObject(ev, "model", "stories260K.bin");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(ev, "choices"), c);
        cJSON_AddNumberToObject(c, "index", 0);
        cJSON_AddStringToObject(c, "text", t->valuestring);
        cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddNullToObject(c, "finish_reason");
        char *s = cJSON_PrintUnformatted(ev);
        strcat(want, "data: ");
        strcat(want, s);
        strcat(want, "\n\n");
        free(s);
        cJSON_Delete(ev);
    }
    char fin[512];
    snprintf(fin, sizeof fin, "data: {\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%.0f,\"model\":"
             "\"stories260K.bin\",\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"%s\"}]}"
             "\n\ndata: [DONE]\n\n", id, created, jstr(w, "choices.0.finish_reason"));
    strcat(want, fin);
    CHECKF(cJSON_GetArraySize(toks) >= 1 && n == strlen(want) && !memcmp(got, want, n),
           "SSE bytes differ:\n got %s\nwant %s", got, want);
    cJSON_Delete(first);
    cJSON_Delete(w);
    free(got);
    free(want);
}

/* The text of an SSE stream of completions chunks ("" when malformed). */
static char *sse_text(const char *raw, int *done) {
    char *text = calloc(1, strlen(raw) + 1);
    *done = 0;
    for (const char *p = raw; *p;) {
        const char *e = strstr(p, "\n\n");
        if (!e || strncmp(p, "data: ", 6)) break;
        if (!strncmp(p, "data: [DONE]\n\n", 14)) *done = 1;
        cJSON *j = cJSON_ParseWithLength(p + 6, (size_t)(e - p - 6));
        strcat(text, jstr(j, "choices.0.text"));
        cJSON_Delete(j);
        p = e + 2;
    }
    return text;
}

typedef struct stream_job {
    int port, seed;
    char *text;
    int done;
} stream_job;

static void *stream_one(void *arg) {
    stream_job *sj = arg;
    char body[256];
    snprintf(body, sizeof body, "{\"prompt\":\"Lily and Tom\",\"max_tokens\":60,\"seed\":%d,\"temperature\":0.8,"
             "\"stream\":true}", sj->seed);
    reply r;
    if (http_req(sj->port, "POST", "/v1/completions", KEY, body, &r) == 0) sj->text = sse_text(r.body, &sj->done);
    reply_free(&r);
    return NULL;
}

/* Fixed seeds, temperature > 0: 8 concurrent streams give what each gives alone. */
static void test_determinism(int port) {
    char *solo[8];
    for (int i = 0; i < 8; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"prompt\":\"Lily and Tom\",\"max_tokens\":60,\"seed\":%d,\"temperature\":0.8}",
                 i + 1);
        cJSON *j = complete(port, "/v1/completions", body);
        solo[i] = strdup(jstr(j, "choices.0.text"));
        cJSON_Delete(j);
    }
    const double steps0 = metric(port, "q35_steps_total"), gen0 = metric(port, "q35_tokens_predicted_total");
    stream_job sj[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        sj[i] = (stream_job){.port = port, .seed = i + 1};
        pthread_create(&th[i], NULL, stream_one, &sj[i]);
    }
    int same = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        const int eq = sj[i].text && sj[i].done && !strcmp(sj[i].text, solo[i]) && solo[i][0];
        CHECKF(eq, "seed %d: stream '%s', alone '%s'", i + 1, sj[i].text ? sj[i].text : "(none)", solo[i]);
        same += eq;
        free(sj[i].text);
        free(solo[i]);
    }
    const double steps = metric(port, "q35_steps_total") - steps0, gen = metric(port, "q35_tokens_predicted_total") - gen0;
    printf("determinism: %d of 8 concurrent streams equal their solo runs; %.0f tokens in %.0f steps\n", same, gen,
           steps);
    CHECKF(steps > 0 && gen / steps > 1.5, "the 8 streams were not batched: %.0f tokens in %.0f steps", gen, steps);
}

/* ---- the small server: a full queue, a client going away, shutdown ------------------- */

/* Opens a stream and reads up to its first event; returns the socket (or -1). */
static int open_stream(int port, const char *body) {
    const int fd = tcp_connect(port);
    char req[1024];
    snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Length: %zu\r\n\r\n%s", KEY, strlen(body), body);
    if (fd < 0 || send_all(fd, req, strlen(req))) return fd < 0 ? -1 : (close(fd), -1);
    char buf[4096];
    size_t n = 0;
    const double t0 = srv_now();
    while (n < sizeof buf - 1 && srv_now() - t0 < 60) { /* up to the first event's end */
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 500) <= 0) continue;
        const ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (k <= 0) break;
        n += (size_t)k;
        buf[n] = '\0';
        if (strstr(buf, "data: ") && strstr(strstr(buf, "data: "), "\n\n")) return fd;
    }
    close(fd);
    return -1;
}

static void test_small_server(const char *model) {
    server s;
    const char *args[] = {"-m", model, "-t", "1", "-np", "1", "--queue", "0", "--api-key", KEY, NULL};
    if (server_start(&s, bin, tmpdir, "small", args)) {
        CHECKF(0, "the small server did not start (see %s)", s.log);
        return;
    }
    const char *slow = "{\"prompt\":\"Once upon a time\",\"max_tokens\":500,\"ignore_eos\":true,\"stream\":true}";
    /* the one slot busy, no queue: 503 with Retry-After */
    int fd = open_stream(s.port, slow);
    CHECK(fd >= 0);
    reply r;
    CHECK(http_req(s.port, "POST", "/v1/completions", KEY, "{\"prompt\":\"x\",\"max_tokens\":2}", &r) == 0);
    char ra[32];
    CHECKF(r.status == 503 && reply_header(&r, "Retry-After", ra, sizeof ra) && atoi(ra) >= 1 &&
               strstr(r.body, "\"error\""),
           "full queue: %d %s", r.status, r.body);
    printf("  %-40s -> %d, Retry-After %s\n", "every slot busy, queue full", r.status, ra);
    reply_free(&r);
    /* the client goes away: its job is cancelled, the slot frees */
    const double gen0 = metric(s.port, "q35_tokens_predicted_total");
    if (fd >= 0) close(fd);
    double cancelled = 0;
    for (int i = 0; i < 100 && cancelled < 1; i++) {
        usleep(50000);
        cancelled = metric(s.port, "q35_generations_cancelled_total");
    }
    const double gen1 = metric(s.port, "q35_tokens_predicted_total");
    CHECKF(cancelled == 1 && gen1 - gen0 < 400, "a client gone: cancelled %.0f, %.0f tokens generated after", cancelled,
           gen1 - gen0);
    printf("  %-40s -> cancelled, %.0f tokens generated after the close\n", "client gone mid-stream", gen1 - gen0);
    CHECK(http_req(s.port, "POST", "/v1/completions", KEY, "{\"prompt\":\"x\",\"max_tokens\":2}", &r) == 0 &&
          r.status == 200);
    reply_free(&r);
    /* a model without a chat template: chatml, as llama-server's */
    cJSON *chat = complete(s.port, "/v1/chat/completions",
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}");
    cJSON *tok = NULL;
    if (http_req(s.port, "POST", "/tokenize", KEY, "{\"content\":\"<|im_start|>user\\nhi<|im_end|>\\n"
                 "<|im_start|>assistant\\n\",\"add_special\":true}", &r) == 0)
        tok = cJSON_Parse(r.body ? r.body : "");
    reply_free(&r);
    CHECKF(chat && jnum(chat, "usage.prompt_tokens") == cJSON_GetArraySize(jget(tok, "tokens")) &&
               cJSON_GetArraySize(jget(tok, "tokens")) > 10,
           "chatml: %.0f prompt tokens, the rendered text %d", jnum(chat, "usage.prompt_tokens"),
           cJSON_GetArraySize(jget(tok, "tokens")));
    cJSON_Delete(chat);
    cJSON_Delete(tok);

    /* SIGTERM with a stream in flight: it finishes, new connections are refused, exit 0 */
    fd = open_stream(s.port, "{\"prompt\":\"Once upon a time\",\"max_tokens\":300,\"ignore_eos\":true,\"stream\":true}");
    CHECK(fd >= 0);
    kill(s.pid, SIGTERM);
    size_t n = 0;
    int closed;
    char *rest = fd >= 0 ? recv_all(fd, 60000, &n, &closed) : NULL;
    CHECKF(rest && strstr(rest, "\"finish_reason\":\"length\"") && strstr(rest, "data: [DONE]"),
           "the stream in flight at SIGTERM did not finish: ...%s", rest && n > 200 ? rest + n - 200 : rest ? rest : "(nothing)");
    free(rest);
    if (fd >= 0) close(fd);
    const int st = server_stop(&s, SIGTERM, 60);
    CHECKF(st == 0, "exit status %d after SIGTERM (log %s)", st, s.log);
    char *log = NULL;
    FILE *f = fopen(s.log, "r");
    if (f) {
        log = calloc(1, 1 << 20);
        if (fread(log, 1, (1 << 20) - 1, f)) {
        }
        fclose(f);
    }
    CHECKF(log && strstr(log, "chats: chatml (built in: the model has no chat template") && strstr(log, "SIGTERM") && strstr(log, "stopped") && strstr(log, "POST /v1/completions 503") &&
               strstr(log, "cancelled: the client went away") && !strstr(log, "ERROR") && !strstr(log, "runtime error"),
           "the small server's log: %s", log);
    free(log);

    /* SIGINT twice: the stream in flight is cancelled with an error event */
    if (server_start(&s, bin, tmpdir, "small2", args)) {
        CHECKF(0, "the small server did not start again (see %s)", s.log);
        return;
    }
    fd = open_stream(s.port, slow);
    kill(s.pid, SIGINT);
    usleep(200000);
    kill(s.pid, SIGINT);
    rest = fd >= 0 ? recv_all(fd, 60000, &n, &closed) : NULL;
    CHECKF(rest && strstr(rest, "\"error\"") && strstr(rest, "shutting down") && !strstr(rest, "[DONE]"),
           "a second SIGINT: %s", rest ? rest : "(nothing)");
    free(rest);
    if (fd >= 0) close(fd);
    CHECKF(server_stop(&s, SIGINT, 60) == 0, "exit status after SIGINT twice");
}

/* A Q3_5 model is packed at load by an OpenMP team of the loading thread;
 * the server then steps on its scheduler's thread. Idle, at -t 1, it holds
 * main, the scheduler and the HTTP listener: the loading team is gone
 * (left, libgomp counted more threads than cores and slept at every
 * barrier of the steps' team). */
static void test_threads(const char *model, const char *tok) {
    char q35[300], cmd[4400];
    snprintf(q35, sizeof q35, "%s/s260k-q35.gguf", tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' --type Q3_5 --tokenizer '%s' >/dev/null 2>&1", bin, model, q35,
             tok);
    if (system(cmd) != 0) {
        CHECKF(0, "could not make %s", q35);
        return;
    }
    server s;
    const char *args[] = {"-m", q35, "-t", "1", "-np", "1", "-c", "64", NULL};
    if (server_start(&s, bin, tmpdir, "threads", args)) {
        CHECKF(0, "the Q3_5 server did not start (see %s)", s.log);
        return;
    }
    const int threads = threads_down_to(s.pid, 3); /* /health's connection thread ends */
    CHECKF(threads == 3, "threads of an idle -t 1 server: %d, want 3 (main, scheduler, HTTP listener)", threads);
    printf("  %-40s -> %d\n", "threads of an idle -t 1 Q3_5 server", threads);
    CHECK(server_stop(&s, SIGTERM, 30) == 0);
}

/* A piece longer than any fixed buffer (token 300 of a copy of tok512.bin
 * made 3000 bytes long): /detokenize gives it whole (511 bytes once), and
 * /tokenize's pieces still work on that vocabulary. */
static void test_long_piece(const char *model, const char *tok512) {
    char path[600];
    snprintf(path, sizeof path, "%s/long-piece.bin", tmpdir);
    FILE *in = fopen(tok512, "rb"), *out = fopen(path, "wb");
    int ok = in && out;
    int32_t maxlen = 0, len = 0;
    float score = 0;
    char buf[4096];
    ok = ok && fread(&maxlen, 4, 1, in) == 1;
    maxlen = 3000;
    ok = ok && fwrite(&maxlen, 4, 1, out) == 1;
    for (int i = 0; ok && i < 512; i++) {
        ok = fread(&score, 4, 1, in) == 1 && fread(&len, 4, 1, in) == 1 && len >= 0 && len < (int32_t)sizeof buf &&
             fread(buf, 1, (size_t)len, in) == (size_t)len;
        if (ok && i == 300) {
            len = 3000;
            for (int j = 0; j < len; j++) buf[j] = (char)('a' + j % 26);
        }
        ok = ok && fwrite(&score, 4, 1, out) == 1 && fwrite(&len, 4, 1, out) == 1 && fwrite(buf, 1, (size_t)len, out) == (size_t)len;
    }
    if (in) fclose(in);
    if (out && fclose(out)) ok = 0;
    CHECKF(ok, "could not write %s from %s", path, tok512);
    if (!ok) return;
    server s;
    const char *args[] = {"-m", model, "--tokenizer", path, "-t", "1", "-c", "64", NULL};
    if (server_start(&s, bin, tmpdir, "long", args)) {
        CHECKF(0, "the long-piece server did not start (see %s)", s.log);
        return;
    }
    reply r;
    cJSON *j = NULL;
    if (http_req(s.port, "POST", "/detokenize", NULL, "{\"tokens\":[300, 300]}", &r) == 0) j = cJSON_Parse(r.body ? r.body : "");
    reply_free(&r);
    const char *content = jstr(j, "content");
    CHECKF(content && strlen(content) == 6000 && !strncmp(content, "abcdefghij", 10) &&
               !strncmp(content + 2990, "abcdefghijabcd", 14),
           "/detokenize of a 3000-byte piece twice: %zu bytes", content ? strlen(content) : 0);
    cJSON_Delete(j);
    j = NULL;
    if (http_req(s.port, "POST", "/tokenize", NULL, "{\"content\":\"hello\",\"with_pieces\":true}", &r) == 0)
        j = cJSON_Parse(r.body ? r.body : "");
    reply_free(&r);
    CHECKF(j && cJSON_GetArraySize(jget(j, "tokens")) > 0, "/tokenize with pieces on the long-piece vocabulary");
    cJSON_Delete(j);
    CHECKF(server_stop(&s, SIGTERM, 60) == 0, "the long-piece server's exit status (log %s)", s.log);
    printf("  %-40s -> whole (3000 bytes)\n", "a 3000-byte piece through /detokenize");
}

/* ---- node: the openai client, the load generator ------------------------------------ */

static void test_node(const server *s) {
    if (!have("node")) {
        SKIP("no node: the openai client and the load generator did not run");
        return;
    }
    char cmd[4096];
    const char *o = oracles_dir();
    char pkg[1200];
    snprintf(pkg, sizeof pkg, "%s/node_modules/openai/package.json", o ? o : ".");
    if (!o) {
        SKIP("no oracles (run ../shared/oracles/setup.sh): the openai client did not run");
    } else if (access(pkg, R_OK) != 0) {
        SKIP("no openai package in the oracles (run ../shared/oracles/setup.sh): the openai client did not run");
    } else {
        char out[300];
        snprintf(out, sizeof out, "%s/openai.out", tmpdir);
        snprintf(cmd, sizeof cmd, "node tests/serve_openai.cjs '%s' http://127.0.0.1:%d/v1 %s > '%s' 2>&1", o, s->port,
                 KEY, out);
        const int rc = system(cmd);
        FILE *f = fopen(out, "r");
        char line[4096];
        int oks = 0, done = 0;
        while (f && fgets(line, sizeof line, f)) {
            if (!strncmp(line, "ok ", 3)) oks++;
            else if (!strncmp(line, "done", 4)) done = 1;
            else CHECKF(0, "openai client: %s", line);
        }
        if (f) fclose(f);
        CHECKF(rc == 0 && done && oks >= 20, "the openai client: exit %d, %d checks passed", rc, oks);
        printf("openai client: %d checks passed\n", oks);
    }
    /* a short load: 16 clients, 6 s, every response checked */
    char out[300];
    snprintf(out, sizeof out, "%s/load.out", tmpdir);
    snprintf(cmd, sizeof cmd, "node bench/serve_load.mjs --url http://127.0.0.1:%d --api-key %s --clients 16 "
             "--duration 6 --prompt-words 2:40 --max-tokens 8:96 --pid %d > '%s' 2>&1", s->port, KEY, (int)s->pid, out);
    const int rc = system(cmd);
    char text[4096];
    read_text(out, text, sizeof text);
    CHECKF(rc == 0 && strstr(text, "errors 0"), "load: %s", text);
    printf("%s", text);
}

int main(void) {
    test_parser();
    test_text();

    bin = getenv("Q35_BIN");
    if (!bin || !*bin) bin = "build/q35";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/q35-server-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        CHECK(0);
        TEST_END();
    }
    char model[1024], model3m[1024];
    shared_path(model, sizeof model, "models/stories260K/stories260K.bin");
    shared_path(model3m, sizeof model3m, "models/stories3M/stories3M-q80.bin");
    char story[300];
    snprintf(story, sizeof story, "%s/story.jinja", tmpdir);
    FILE *tf = fopen(story, "w");
    CHECK(tf != NULL);
    if (tf) {
        fputs("{{ bos_token }}{% for m in messages %}{% if m.role == 'tool' %}"
              "{{ raise_exception('this template takes no tool messages') }}{% endif %}"
              "{{ m.content }}{% endfor %}", tf);
        fclose(tf);
    }
    server s;
    const char *args[] = {"-m", model, "-t", "1", "-np", "8", "-c", "256", "--timeout", "2", "--api-key", KEY,
                          "--chat-template", story, NULL};
    if (server_start(&s, bin, tmpdir, "main", args) == 0) {
        test_endpoints(s.port);
        test_generation(s.port);
        test_sse_curl(s.port);
        test_determinism(s.port);
        test_bad_input(&s);
        test_node(&s);
        const int st = server_stop(&s, SIGTERM, 60);
        CHECKF(st == 0, "the main server's exit status %d (log %s)", st, s.log);
    } else {
        CHECKF(0, "the server did not start (log %s)", s.log);
    }
    test_small_server(model3m);
    char tok512[1024];
    shared_path(tok512, sizeof tok512, "models/stories260K/tok512.bin");
    test_long_piece(model, tok512);
    test_threads(model, tok512);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (h_failed == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_END();
}
