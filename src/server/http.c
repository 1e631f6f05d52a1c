/* http.c — the HTTP side of `q35 serve` (server.h) over libmicrohttpd.
 *
 * A thread per connection: its handler parses and validates a request,
 * tokenizes the prompt, submits a job to the scheduler and then waits for
 * it — on the job's eventfd and on the client's socket together, so a
 * client that goes away cancels its job at once (the scheduler drops it
 * before its next step). Streams are a response whose reader blocks for
 * the next output and writes Server-Sent Events. */
#define _GNU_SOURCE /* POLLRDHUP */
#include "server/server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/chat.h"
#include "server/request.h"
#include "server/respond.h"
#include "server/text.h"

struct srv {
    struct MHD_Daemon *d;
    int listen_fd;
    srv_sched *sch;
    const q35_model *m;
    srv_params p;
    char name[256];
    int port;
    long long started; /* Unix seconds */
    atomic_ullong n_requests, next_id;
    atomic_int in_flight; /* generation requests not yet completed */
};

enum route { R_NONE, R_COMPLETIONS, R_CHAT, R_MODELS, R_HEALTH, R_METRICS, R_TOKENIZE, R_DETOKENIZE };

static const struct {
    const char *path, *method;
    int route;
} routes[] = {
    {"/v1/completions", "POST", R_COMPLETIONS}, {"/completions", "POST", R_COMPLETIONS},
    {"/v1/chat/completions", "POST", R_CHAT},   {"/chat/completions", "POST", R_CHAT},
    {"/v1/models", "GET", R_MODELS},            {"/models", "GET", R_MODELS},
    {"/health", "GET", R_HEALTH},               {"/v1/health", "GET", R_HEALTH},
    {"/metrics", "GET", R_METRICS},             {"/tokenize", "POST", R_TOKENIZE},
    {"/detokenize", "POST", R_DETOKENIZE},
};

/* One request on a connection. */
typedef struct conn {
    srv *s;
    int route;
    char method[16], path[128];
    char *body;
    size_t n_body, cap_body;
    int too_big;
    int status;   /* the status sent (0: none yet) */
    double t0;
    srv_job *job; /* a generation's job (a reference) */
    int fd;       /* the client's socket */
} conn;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- replies ---------------------------------------------------------------- */

/* Every response ends its connection ("Connection: close"), so the
 * connection's thread (one per connection) ends with it. Kept alive, 64
 * clients held 64 threads for the whole load test, and glibc's per-thread
 * caches of freed blocks (tcache: up to 7 per size class per thread, the
 * blocks the scheduler allocated included) grew the server's RSS from
 * 25.3 MiB after 30 s to 33.0 MiB after 300 s; with those caches off
 * (GLIBC_TUNABLES=glibc.malloc.tcache_count=0) it stayed at 20.6-21.0
 * MiB, and heaptrack found no growth in what the program holds. A thread
 * that ends returns its cache. Reconnecting costs a loopback connect and a
 * thread per request: on stories3M, where a request is mostly HTTP, two
 * 45-s rounds of that load gave 0.72x and 0.99x the tokens/s; beside a
 * real model's generation it is lost (docs/serve.md). */
static void close_after(struct MHD_Response *r) { MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close"); }

/* Queues status with body (malloc'ed, taken over; NULL: out of memory). */
static enum MHD_Result reply(struct MHD_Connection *mc, conn *c, unsigned status, char *body, const char *type,
                             const char *hdr, const char *value) {
    if (!body) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (hdr) MHD_add_response_header(r, hdr, value);
    close_after(r);
    const enum MHD_Result ok = MHD_queue_response(mc, status, r);
    MHD_destroy_response(r);
    c->status = (int)status;
    return ok;
}

static enum MHD_Result reply_json(struct MHD_Connection *mc, conn *c, unsigned status, char *body) {
    return reply(mc, c, status, body, "application/json", NULL, NULL);
}

static enum MHD_Result reply_error(struct MHD_Connection *mc, conn *c, unsigned status, const char *type,
                                   const char *param, const char *msg) {
    const char *hdr = NULL, *value = NULL;
    if (status == 503) hdr = MHD_HTTP_HEADER_RETRY_AFTER, value = "1";
    if (status == 401) hdr = MHD_HTTP_HEADER_WWW_AUTHENTICATE, value = "Bearer";
    return reply(mc, c, status, srv_json_error(type, param, msg), "application/json", hdr, value);
}

static enum MHD_Result bad_request(struct MHD_Connection *mc, conn *c, const char *param, const char *msg) {
    return reply_error(mc, c, 400, "invalid_request_error", param, msg);
}

/* ---- waiting for a job -------------------------------------------------------- */

/* Waits up to ms for news of job j: 1 when it has some, 0 on a timeout, -1
 * when the client closed its connection. */
static int wait_job(srv_job *j, int fd, int ms) {
    struct pollfd p[2] = {{srv_job_fd(j), POLLIN, 0}, {fd, POLLRDHUP, 0}};
    const int n = poll(p, fd >= 0 ? 2 : 1, ms);
    if (n > 0 && fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR))) return -1;
    return n > 0 && (p[0].revents & POLLIN);
}

/* The job's state without its output. */
static int job_state(srv_job *j, srv_take *t) {
    const int rc = srv_job_take(j, (size_t)-1, INT_MAX, t);
    srv_take_free(t);
    return rc;
}

/* ---- streams ------------------------------------------------------------------- */

typedef struct stream {
    srv *s;
    srv_job *job;
    srv_resp resp;
    int fd, include_usage;
    size_t sent_text;
    int sent_tok, started, ended;
    char *buf;          /* events not yet handed to the connection */
    size_t n, off, cap;
} stream;

static int stream_put(stream *st, const char *a, const char *b, const char *c) {
    const size_t need = strlen(a) + strlen(b) + strlen(c);
    if (st->n + need > st->cap) {
        size_t cap = st->cap ? st->cap : 1024;
        while (cap < st->n + need) cap *= 2;
        char *t = realloc(st->buf, cap);
        if (!t) return -1;
        st->buf = t;
        st->cap = cap;
    }
    memcpy(st->buf + st->n, a, strlen(a));
    memcpy(st->buf + st->n + strlen(a), b, strlen(b));
    memcpy(st->buf + st->n + strlen(a) + strlen(b), c, strlen(c));
    st->n += need;
    return 0;
}

/* "data: JSON\n\n" (json malloc'ed, taken over). */
static int stream_event(stream *st, char *json) {
    const int rc = json ? stream_put(st, "data: ", json, "\n\n") : -1;
    free(json);
    return rc;
}

/* The events for what t released, one per token whose text is out; sets
 * st->ended at the end. */
static int stream_events(stream *st, const srv_take *t) {
    if (t->finish == SRV_FINISH_ERROR) {
        st->ended = 1;
        return stream_event(st, srv_json_error("server_error", "", t->error));
    }
    const size_t base = st->sent_text;
    size_t at = base;
    for (int k = 0; k < t->n_toks; k++) {
        const size_t end = t->ends[k];
        if (end > at || t->toks) {
            if (stream_event(st, srv_json_chunk(&st->resp, t->text + (at - base), end - at, t->toks ? t->toks + k : NULL,
                                                t->toks ? 1 : 0, 0, !st->started)))
                return -1;
            st->started = 1;
        }
        at = end;
    }
    st->sent_text = at;
    st->sent_tok += t->n_toks;
    const int fin = t->finish == SRV_FINISH_STOP || t->finish == SRV_FINISH_LENGTH ? t->finish : 0;
    if (!fin) return 0;
    st->sent_text = base + t->n_text;
    /* what is left (text out in part only now), with the finish */
    if (stream_event(st, srv_json_chunk(&st->resp, t->text + (at - base), base + t->n_text - at, NULL, 0, fin,
                                        !st->started)))
        return -1;
    st->ended = 1;
    if (st->include_usage && stream_event(st, srv_json_usage_chunk(&st->resp, t->n_prompt, t->n_gen))) return -1;
    return stream_put(st, "data: [DONE]", "", "\n\n");
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    stream *st = cls;
    for (;;) {
        if (st->off < st->n) {
            const size_t k = st->n - st->off < max ? st->n - st->off : max;
            memcpy(out, st->buf + st->off, k);
            st->off += k;
            return (ssize_t)k;
        }
        st->n = st->off = 0;
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        srv_take t;
        if (srv_job_take(st->job, st->sent_text, st->sent_tok, &t)) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (t.finish == SRV_FINISH_CANCELLED) {
            srv_take_free(&t);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        const int news = t.n_toks || t.finish;
        const int rc = news ? stream_events(st, &t) : 0;
        srv_take_free(&t);
        if (rc) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (news) continue;
        if (wait_job(st->job, st->fd, 1000) < 0) { /* the client is gone */
            srv_job_cancel(st->s->sch, st->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    stream *st = cls;
    srv_job_release(st->job);
    free(st->buf);
    free(st);
}

/* ---- generation ----------------------------------------------------------------- */

static void resp_init(srv *s, int kind, const srv_request *rq, srv_resp *r) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    const unsigned long long n = atomic_fetch_add(&s->next_id, 1);
    snprintf(r->id, sizeof r->id, "%s-%llx%08llx", kind == SRV_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)s->started,
             n);
    r->created = (long long)time(NULL);
    r->model = s->name;
    r->m = s->m;
    r->logprobs = rq->logprobs;
    r->n_top = rq->top_logprobs;
}

/* Token ids of len bytes of text, as llama-server tokenizes prompts:
 * BOS (what the tokenizer adds) when add_special, special-token spellings
 * (<|im_start|>, ...) read as those tokens when parse_special. */
static int text_tokens(const srv *s, const char *text, size_t len, int add_special, int parse_special, int **ids,
                       int *n, q35_error *err) {
    const unsigned flags = (add_special ? Q35_TOKENIZE_ADD_SPECIAL : 0u) | (parse_special ? Q35_TOKENIZE_PARSE_SPECIAL : 0u);
    return q35_tokenizer_encode(q35_model_tokenizer(s->m), text, len, flags, ids, n, err);
}

/* The prompt's tokens, or a 400 queued (returns -1 then; *ids NULL). */
static int prompt_tokens(struct MHD_Connection *mc, conn *c, srv_request *rq, int **ids, int *n, enum MHD_Result *res) {
    srv *s = c->s;
    q35_error err = {0};
    const char *param = rq->kind == SRV_CHAT ? "messages" : "prompt";
    int rc;
    *ids = NULL;
    *n = 0;
    if (rq->kind == SRV_CHAT) {
        rc = srv_chat_tokens(s->m, s->p.chat_template, rq->msgs, rq->n_msgs, ids, n, &err);
    } else if (rq->prompt_ids) {
        const int V = q35_model_config(s->m)->vocab_size;
        for (int i = 0; i < rq->n_prompt_ids; i++)
            if (rq->prompt_ids[i] >= V) {
                char msg[160];
                snprintf(msg, sizeof msg, "'prompt' holds token %d, outside the vocabulary of %d", rq->prompt_ids[i], V);
                *res = bad_request(mc, c, param, msg);
                return -1;
            }
        *ids = rq->prompt_ids; /* taken over */
        *n = rq->n_prompt_ids;
        rq->prompt_ids = NULL;
        rc = 0;
    } else {
        rc = text_tokens(s, rq->prompt, rq->prompt_len, 1, 1, ids, n, &err);
    }
    if (rc || *n == 0) {
        free(*ids);
        *ids = NULL;
        *res = bad_request(mc, c, param, rc ? err.msg : "the prompt is empty");
        return -1;
    }
    const int ctx = srv_sched_n_ctx(s->sch);
    char msg[256];
    if (*n >= ctx) {
        snprintf(msg, sizeof msg, "'%s' is %d tokens; the context holds %d per request (--ctx-size), "
                 "with room for at least one generated token", param, *n, ctx);
        *res = bad_request(mc, c, param, msg);
    } else if (rq->max_tokens > ctx - *n) {
        const char *mt = "max_tokens";
        snprintf(msg, sizeof msg, "'%s' %d is beyond the context: the prompt takes %d of its %d tokens, leaving %d", mt,
                 rq->max_tokens, *n, ctx, ctx - *n);
        *res = bad_request(mc, c, mt, msg);
    } else {
        return 0;
    }
    free(*ids);
    *ids = NULL;
    return -1;
}

static enum MHD_Result generate(struct MHD_Connection *mc, conn *c, int kind) {
    srv *s = c->s;
    srv_request rq;
    srv_reject why;
    if (srv_request_parse(&rq, kind, c->body ? c->body : "", c->n_body, &why))
        return bad_request(mc, c, why.param, why.msg);
    int *ids, n_ids;
    enum MHD_Result res = MHD_NO;
    if (prompt_tokens(mc, c, &rq, &ids, &n_ids, &res)) {
        srv_request_free(&rq);
        return res;
    }
    srv_resp resp;
    resp_init(s, kind, &rq, &resp);
    const int stream_it = rq.stream, include_usage = rq.include_usage;
    c->job = srv_job_new(&rq, ids, n_ids);
    srv_request_free(&rq);
    if (!c->job) {
        free(ids);
        return reply_error(mc, c, 500, "server_error", "", "out of memory");
    }
    atomic_fetch_add(&s->in_flight, 1);
    const int sub = srv_sched_submit(s->sch, c->job);
    if (sub == SRV_BUSY)
        return reply_error(mc, c, 503, "server_error", "", "every slot is busy and the queue is full; retry later");
    if (sub == SRV_CLOSING) return reply_error(mc, c, 503, "server_error", "", "the server is shutting down");

    if (stream_it) {
        stream *st = calloc(1, sizeof *st);
        if (!st) return MHD_NO;
        *st = (stream){.s = s, .job = c->job, .resp = resp, .fd = c->fd, .include_usage = include_usage};
        srv_job_retain(c->job); /* the stream's own reference */
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
        if (!r) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        close_after(r);
        const enum MHD_Result ok = MHD_queue_response(mc, 200, r);
        MHD_destroy_response(r);
        c->status = 200;
        return ok;
    }

    /* a whole response: wait, without the idle timeout meanwhile */
    MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    srv_take t;
    for (;;) {
        if (job_state(c->job, &t)) return MHD_NO;
        if (t.finish) break;
        if (wait_job(c->job, c->fd, 1000) < 0) {
            srv_job_cancel(s->sch, c->job);
            return MHD_NO;
        }
    }
    MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)s->p.timeout);
    if (t.finish == SRV_FINISH_CANCELLED) return MHD_NO;
    if (t.finish == SRV_FINISH_ERROR) return reply_error(mc, c, 503, "server_error", "", t.error);
    if (srv_job_take(c->job, 0, 0, &t)) return MHD_NO;
    char *body = srv_json_final(&resp, t.text, t.n_text, t.toks, t.n_toks, t.finish, t.n_prompt, t.n_gen);
    srv_take_free(&t);
    return reply_json(mc, c, 200, body);
}

/* ---- the other endpoints ----------------------------------------------------------- */

static enum MHD_Result models(struct MHD_Connection *mc, conn *c) {
    srv *s = c->s;
    const q35_config *cfg = q35_model_config(s->m);
    cJSON *o = cJSON_CreateObject(), *data = NULL, *e = NULL, *meta = NULL;
    int ok = o && cJSON_AddStringToObject(o, "object", "list") && (data = cJSON_AddArrayToObject(o, "data")) &&
             (e = cJSON_CreateObject()) && cJSON_AddItemToArray(data, e) && cJSON_AddStringToObject(e, "id", s->name) &&
             cJSON_AddStringToObject(e, "object", "model") && cJSON_AddNumberToObject(e, "created", (double)s->started) &&
             cJSON_AddStringToObject(e, "owned_by", "q35") && (meta = cJSON_AddObjectToObject(e, "meta")) &&
             cJSON_AddStringToObject(meta, "arch", q35_model_arch(s->m)) &&
             cJSON_AddNumberToObject(meta, "n_ctx", srv_sched_n_ctx(s->sch)) &&
             cJSON_AddNumberToObject(meta, "n_ctx_train", cfg->seq_len) &&
             cJSON_AddNumberToObject(meta, "n_vocab", cfg->vocab_size) &&
             cJSON_AddNumberToObject(meta, "n_params", (double)q35_model_n_params(s->m)) &&
             cJSON_AddNumberToObject(meta, "n_parallel", s->p.sched.n_parallel);
    char *body = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return reply_json(mc, c, 200, body);
}

static enum MHD_Result metrics(struct MHD_Connection *mc, conn *c) {
    srv *s = c->s;
    srv_metrics m;
    srv_sched_metrics(s->sch, &m);
    char *b = malloc(4096);
    if (!b) return MHD_NO;
    snprintf(b, 4096,
             "# HELP q35_requests_total HTTP requests received.\n# TYPE q35_requests_total counter\n"
             "q35_requests_total %llu\n"
             "# HELP q35_generations_total Generations finished (stop or length).\n# TYPE q35_generations_total counter\n"
             "q35_generations_total %llu\n"
             "# HELP q35_generations_cancelled_total Generations cancelled by their client.\n"
             "# TYPE q35_generations_cancelled_total counter\nq35_generations_cancelled_total %llu\n"
             "# HELP q35_requests_rejected_total Requests refused with 503 (queue full or shutting down).\n"
             "# TYPE q35_requests_rejected_total counter\nq35_requests_rejected_total %llu\n"
             "# HELP q35_prompt_tokens_total Prompt tokens evaluated.\n# TYPE q35_prompt_tokens_total counter\n"
             "q35_prompt_tokens_total %llu\n"
             "# HELP q35_tokens_predicted_total Tokens generated.\n# TYPE q35_tokens_predicted_total counter\n"
             "q35_tokens_predicted_total %llu\n"
             "# HELP q35_tokens_predicted_seconds_total Seconds spent in steps that generated tokens.\n"
             "# TYPE q35_tokens_predicted_seconds_total counter\nq35_tokens_predicted_seconds_total %.6f\n"
             "# HELP q35_predicted_tokens_per_second Tokens generated per second of those steps, all slots together.\n"
             "# TYPE q35_predicted_tokens_per_second gauge\nq35_predicted_tokens_per_second %.3f\n"
             "# HELP q35_prompt_tokens_per_second Prompt and generated tokens evaluated per second of steps.\n"
             "# TYPE q35_prompt_tokens_per_second gauge\nq35_prompt_tokens_per_second %.3f\n"
             "# HELP q35_steps_total Batched steps run.\n# TYPE q35_steps_total counter\nq35_steps_total %llu\n"
             "# HELP q35_steps_overlapped_total Steps sent into the stages while another group's step was in them (q35-mpi).\n"
             "# TYPE q35_steps_overlapped_total counter\nq35_steps_overlapped_total %llu\n"
             "# HELP q35_requests_processing Slots generating or reading a prompt.\n# TYPE q35_requests_processing gauge\n"
             "q35_requests_processing %d\n"
             "# HELP q35_requests_deferred Requests waiting for a slot.\n# TYPE q35_requests_deferred gauge\n"
             "q35_requests_deferred %d\n"
             "# HELP q35_slots Slots (--parallel).\n# TYPE q35_slots gauge\nq35_slots %d\n"
             "# HELP q35_kv_cache_tokens Positions held in the KV cache.\n# TYPE q35_kv_cache_tokens gauge\n"
             "q35_kv_cache_tokens %lld\n"
             "# HELP q35_kv_cache_usage_ratio Positions held over all positions of all slots.\n"
             "# TYPE q35_kv_cache_usage_ratio gauge\nq35_kv_cache_usage_ratio %.6f\n",
             (unsigned long long)atomic_load(&s->n_requests), (unsigned long long)m.jobs_done,
             (unsigned long long)m.jobs_cancelled, (unsigned long long)m.jobs_rejected,
             (unsigned long long)m.prompt_tokens, (unsigned long long)m.gen_tokens, m.gen_seconds,
             m.gen_seconds > 0 ? (double)m.gen_tokens / m.gen_seconds : 0.0,
             m.step_seconds > 0 ? (double)(m.prompt_tokens + m.gen_tokens) / m.step_seconds : 0.0,
             (unsigned long long)m.steps, (unsigned long long)m.steps_overlapped, m.busy, m.queued,
             m.n_parallel, (long long)m.kv_used, m.kv_size ? (double)m.kv_used / (double)m.kv_size : 0.0);
    return reply(mc, c, 200, b, "text/plain; version=0.0.4", NULL, NULL);
}

/* POST /tokenize {"content", "add_special" (false), "parse_special" (true),
 * "with_pieces"} -> {"tokens": [...]} (llama-server's) */
static enum MHD_Result tokenize(struct MHD_Connection *mc, conn *c) {
    srv *s = c->s;
    cJSON *in = cJSON_ParseWithLength(c->body ? c->body : "", c->n_body);
    const cJSON *content = in ? cJSON_GetObjectItemCaseSensitive(in, "content") : NULL;
    const cJSON *special = in ? cJSON_GetObjectItemCaseSensitive(in, "add_special") : NULL;
    const cJSON *pieces = in ? cJSON_GetObjectItemCaseSensitive(in, "with_pieces") : NULL;
    const cJSON *parse = in ? cJSON_GetObjectItemCaseSensitive(in, "parse_special") : NULL;
    enum MHD_Result res;
    if (!in || !cJSON_IsObject(in)) res = bad_request(mc, c, "", "the body is not a JSON object");
    else if (!cJSON_IsString(content)) res = bad_request(mc, c, "content", "'content' must be a string");
    else if (special && !cJSON_IsBool(special)) res = bad_request(mc, c, "add_special", "'add_special' must be true or false");
    else if (parse && !cJSON_IsBool(parse)) res = bad_request(mc, c, "parse_special", "'parse_special' must be true or false");
    else if (pieces && !cJSON_IsBool(pieces)) res = bad_request(mc, c, "with_pieces", "'with_pieces' must be true or false");
    else {
        int *ids = NULL, n = 0;
        q35_error err = {0};
        if (text_tokens(s, content->valuestring, strlen(content->valuestring), cJSON_IsTrue(special),
                        !parse || cJSON_IsTrue(parse), &ids, &n, &err)) {
            res = bad_request(mc, c, "content", err.msg);
        } else {
            cJSON *o = cJSON_CreateObject(), *a = o ? cJSON_AddArrayToObject(o, "tokens") : NULL;
            int ok = a != NULL;
            char *piece = NULL;
            size_t cap = 0;
            for (int i = 0; i < n && ok; i++) {
                if (!cJSON_IsTrue(pieces)) {
                    ok = cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
                    continue;
                }
                cJSON *e = cJSON_CreateObject();
                ok = e && cJSON_AddItemToArray(a, e) && cJSON_AddNumberToObject(e, "id", ids[i]);
                const size_t len = ok ? q35_detokenize_all(s->m, i ? ids[i - 1] : -1, ids[i], &piece, &cap) : (size_t)-1;
                char *clean = len != (size_t)-1 ? srv_utf8_clean(piece, len, NULL) : NULL;
                ok = clean && cJSON_AddStringToObject(e, "piece", clean);
                free(clean);
            }
            free(piece);
            free(ids);
            char *body = ok ? cJSON_PrintUnformatted(o) : NULL;
            cJSON_Delete(o);
            res = reply_json(mc, c, 200, body);
        }
    }
    cJSON_Delete(in);
    return res;
}

/* POST /detokenize {"tokens": [...]} -> {"content": "..."} */
static enum MHD_Result detokenize(struct MHD_Connection *mc, conn *c) {
    srv *s = c->s;
    const int V = q35_model_config(s->m)->vocab_size;
    cJSON *in = cJSON_ParseWithLength(c->body ? c->body : "", c->n_body);
    const cJSON *toks = in ? cJSON_GetObjectItemCaseSensitive(in, "tokens") : NULL;
    enum MHD_Result res;
    char *text = NULL;
    size_t len = 0, cap = 0;
    if (!in || !cJSON_IsObject(in)) {
        res = bad_request(mc, c, "", "the body is not a JSON object");
    } else if (!cJSON_IsArray(toks)) {
        res = bad_request(mc, c, "tokens", "'tokens' must be a list of token ids");
    } else {
        int prev = -1, ok = 1, bad = 0;
        char *piece = NULL;
        size_t piece_cap = 0;
        for (const cJSON *e = toks->child; e && ok && !bad; e = e->next) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= V || e->valuedouble != (int)e->valuedouble) {
                bad = 1;
                break;
            }
            const size_t n = q35_detokenize_all(s->m, prev, (int)e->valuedouble, &piece, &piece_cap);
            if (n == (size_t)-1) {
                ok = 0;
                break;
            }
            if (len + n + 1 > cap) {
                cap = 2 * (len + n + 1);
                char *t = realloc(text, cap);
                if (!t) ok = 0;
                else text = t;
            }
            if (ok) memcpy(text + len, piece, n), len += n;
            prev = (int)e->valuedouble;
        }
        free(piece);
        if (bad) {
            char msg[128];
            snprintf(msg, sizeof msg, "'tokens' must hold token ids in [0, %d)", V);
            res = bad_request(mc, c, "tokens", msg);
        } else {
            char *clean = ok ? srv_utf8_clean(text ? text : "", len, NULL) : NULL;
            cJSON *o = clean ? cJSON_CreateObject() : NULL;
            char *body = o && cJSON_AddStringToObject(o, "content", clean) ? cJSON_PrintUnformatted(o) : NULL;
            cJSON_Delete(o);
            free(clean);
            res = reply_json(mc, c, 200, body);
        }
    }
    free(text);
    cJSON_Delete(in);
    return res;
}

/* ---- the access handler ---------------------------------------------------------------- */

/* Whether the request carries the API key (compared in constant time). */
static int authorised(const srv *s, struct MHD_Connection *mc) {
    if (!s->p.api_key) return 1;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    const size_t n = strlen(h), k = strlen(s->p.api_key);
    unsigned diff = n != k;
    for (size_t i = 0; i < n && i < k; i++) diff |= (unsigned char)(h[i] ^ s->p.api_key[i]);
    return diff == 0;
}

/* The first call for a request: its route, key and announced size. */
static enum MHD_Result start_request(struct MHD_Connection *mc, conn *c, const char *url, const char *method) {
    srv *s = c->s;
    int path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) {
            path_known = 1;
            if (!strcmp(method, routes[i].method)) c->route = routes[i].route;
        }
    char msg[256];
    if (!path_known) {
        snprintf(msg, sizeof msg, "no endpoint %.200s", url);
        return reply_error(mc, c, 404, "not_found_error", "", msg);
    }
    if (!c->route) {
        snprintf(msg, sizeof msg, "%.200s does not take %.15s", url, method);
        return reply_error(mc, c, 405, "invalid_request_error", "", msg);
    }
    if (c->route != R_HEALTH && !authorised(s, mc))
        return reply_error(mc, c, 401, "authentication_error", "", "invalid or missing API key");
    const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > s->p.max_body) {
        snprintf(msg, sizeof msg, "the body is %.30s bytes, more than the limit of %zu", cl, s->p.max_body);
        return reply_error(mc, c, 413, "invalid_request_error", "", msg);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    srv *s = cls;
    conn *c = *con_cls;
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return MHD_NO;
        *con_cls = c;
        c->s = s;
        c->t0 = now_s();
        c->fd = -1;
        snprintf(c->method, sizeof c->method, "%s", method);
        snprintf(c->path, sizeof c->path, "%s", url);
        atomic_fetch_add(&s->n_requests, 1);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) c->fd = ci->connect_fd;
        return start_request(mc, c, url, method);
    }
    if (*upload_size) { /* a piece of the body */
        if (!c->too_big && c->n_body + *upload_size > s->p.max_body) {
            c->too_big = 1;
            free(c->body);
            c->body = NULL;
        }
        if (!c->too_big && c->n_body + *upload_size + 1 > c->cap_body) {
            size_t cap = c->cap_body ? c->cap_body : 4096;
            while (cap < c->n_body + *upload_size + 1) cap *= 2;
            char *b = realloc(c->body, cap);
            if (!b) return MHD_NO;
            c->body = b;
            c->cap_body = cap;
        }
        if (!c->too_big) {
            memcpy(c->body + c->n_body, upload, *upload_size);
            c->n_body += *upload_size;
            c->body[c->n_body] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (c->status) return MHD_YES; /* answered already */
    if (c->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is more than the limit of %zu bytes", s->p.max_body);
        return reply_error(mc, c, 413, "invalid_request_error", "", msg);
    }
    switch (c->route) {
    case R_COMPLETIONS: return generate(mc, c, SRV_COMPLETION);
    case R_CHAT: return generate(mc, c, SRV_CHAT);
    case R_MODELS: return models(mc, c);
    case R_METRICS: return metrics(mc, c);
    case R_TOKENIZE: return tokenize(mc, c);
    case R_DETOKENIZE: return detokenize(mc, c);
    default: {
        char *ok = strdup("{\"status\":\"ok\"}");
        return reply_json(mc, c, 200, ok);
    }
    }
}

/* A request ended: its log line; a job still running is cancelled. */
static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)mc;
    srv *s = cls;
    conn *c = *con_cls;
    if (!c) return;
    *con_cls = NULL;
    char note[300] = "";
    int n_prompt = 0, n_gen = 0;
    if (c->job) {
        srv_take t;
        if (job_state(c->job, &t) == 0) {
            n_prompt = t.n_prompt;
            n_gen = t.n_gen;
            if (t.finish == SRV_RUNNING || t.finish == SRV_FINISH_CANCELLED) {
                srv_job_cancel(s->sch, c->job);
                snprintf(note, sizeof note, " (cancelled: the client went away)");
            } else if (t.finish == SRV_FINISH_ERROR) {
                snprintf(note, sizeof note, " (%s)", t.error);
            }
        }
        srv_job_release(c->job);
        atomic_fetch_sub(&s->in_flight, 1);
    }
    if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED) snprintf(note, sizeof note, " (timed out)");
    else if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !note[0]) snprintf(note, sizeof note, " (connection closed)");
    if (s->p.log) {
        char status[8] = "-";
        if (c->status) snprintf(status, sizeof status, "%d", c->status);
        fprintf(s->p.log, "q35 serve: %s %s %s prompt %d gen %d %.3f s%s\n", c->method, c->path, status, n_prompt, n_gen,
                now_s() - c->t0, note);
    }
    free(c->body);
    free(c);
}

/* ---- the server ------------------------------------------------------------------------ */

srv_params srv_default_params(void) {
    return (srv_params){.host = "127.0.0.1",
                        .port = 8080,
                        .timeout = 600,
                        .max_body = 1u << 20,
                        .max_connections = 512,
                        .sched = {.n_parallel = 1, .n_batch = 128, .n_queue = 64}};
}

static int fail(q35_error *err, int code, const char *fmt, const char *a, const char *b) {
    if (err) {
        err->code = code;
        snprintf(err->msg, sizeof err->msg, fmt, a, b);
    }
    return code;
}

/* A listening socket on host:port. */
static int listen_on(const char *host, int port, int *fd_out, int *port_out, q35_error *err) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    const int g = getaddrinfo(host, ps, &hints, &ai);
    if (g) return fail(err, Q35_ERR_ARG, "--host %s: %s", host, gai_strerror(g));
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    const int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || bind(fd, ai->ai_addr, ai->ai_addrlen) ||
        listen(fd, 128)) {
        const int e = errno;
        freeaddrinfo(ai);
        if (fd >= 0) close(fd);
        snprintf(ps, sizeof ps, "%d", port);
        char where[300];
        snprintf(where, sizeof where, "%s port %s", host, ps);
        return fail(err, Q35_ERR_IO, "cannot listen on %s: %s", where, strerror(e));
    }
    freeaddrinfo(ai);
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port_out = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                               : ((struct sockaddr_in *)&sa)->sin_port);
    *fd_out = fd;
    return Q35_OK;
}

int srv_start(srv **out, const q35_model *m, const char *model_path, const srv_params *p, q35_error *err) {
    *out = NULL;
    srv *s = calloc(1, sizeof *s);
    if (!s) return fail(err, Q35_ERR_NOMEM, "out of memory%s%s", "", "");
    s->m = m;
    s->p = *p;
    s->listen_fd = -1;
    s->started = (long long)time(NULL);
    atomic_init(&s->n_requests, 0);
    atomic_init(&s->next_id, 1);
    atomic_init(&s->in_flight, 0);
    const char *base = p->model_name ? p->model_name : strrchr(model_path, '/') ? strrchr(model_path, '/') + 1 : model_path;
    snprintf(s->name, sizeof s->name, "%s", base);
    int rc = srv_sched_new(&s->sch, m, &p->sched, err);
    if (!rc) rc = listen_on(p->host, p->port, &s->listen_fd, &s->port, err);
    if (!rc) {
        s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                                    MHD_USE_ITC,
                                0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->timeout, MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned)p->max_connections, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                MHD_OPTION_END);
        if (!s->d) rc = fail(err, Q35_ERR_IO, "cannot start the HTTP server on %s%s", p->host, "");
        else s->listen_fd = -1; /* the daemon's now */
    }
    if (rc) {
        srv_free(s);
        return rc;
    }
    *out = s;
    return Q35_OK;
}

int srv_port(const srv *s) { return s->port; }

void srv_stop(srv *s, int level) {
    if (s->d && level >= 1) {
        const MHD_socket fd = MHD_quiesce_daemon(s->d);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    srv_sched_stop(s->sch, level);
}

int srv_idle(srv *s) { return srv_sched_idle(s->sch) && atomic_load(&s->in_flight) == 0; }

void srv_free(srv *s) {
    if (!s) return;
    if (s->sch) srv_sched_stop(s->sch, 2); /* wakes every stream */
    if (s->d) MHD_stop_daemon(s->d);
    if (s->listen_fd >= 0) close(s->listen_fd);
    srv_sched_free(s->sch);
    free(s);
}
