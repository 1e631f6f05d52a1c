/* request.c — an OpenAI request body into a srv_request (request.h).
 * Every known field is checked for its type and range; null counts as
 * absent; unknown fields are ignored. Sampling defaults are llama.cpp's
 * (q35_sampler_defaults: temperature 0.8, top-k 40, top-p 0.95, min-p
 * 0.05), as llama-server's, not OpenAI's. */
#include "server/request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reject(srv_reject *why, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reject(srv_reject *why, const char *param, const char *fmt, ...) {
    snprintf(why->param, sizeof why->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->msg, sizeof why->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* The field `name` of o, or NULL when absent or null. */
static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

/* A number field in [lo, hi] into *out (untouched when absent). */
static int get_number(const cJSON *o, const char *name, double lo, double hi, double *out, srv_reject *why) {
    const cJSON *f = field(o, name);
    if (!f) return 0;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble))
        return reject(why, name, "'%s' must be a number", name);
    if (f->valuedouble < lo || f->valuedouble > hi)
        return reject(why, name, "'%s' is %g, outside [%g, %g]", name, f->valuedouble, lo, hi);
    *out = f->valuedouble;
    return 0;
}

/* An integer field in [lo, hi]; *present (may be NULL) says whether it was given. */
static int get_int(const cJSON *o, const char *name, double lo, double hi, double *out, int *present,
                   srv_reject *why) {
    const cJSON *f = field(o, name);
    if (present) *present = f != NULL;
    if (!f) return 0;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble) || f->valuedouble != floor(f->valuedouble))
        return reject(why, name, "'%s' must be an integer", name);
    if (f->valuedouble < lo || f->valuedouble > hi)
        return reject(why, name, "'%s' is %.0f, outside [%.0f, %.0f]", name, f->valuedouble, lo, hi);
    *out = f->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *name, int *out, srv_reject *why) {
    const cJSON *f = field(o, name);
    if (!f) return 0;
    if (!cJSON_IsBool(f)) return reject(why, name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(f);
    return 0;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Token ids from a JSON array of integers. */
static int get_ids(const cJSON *a, const char *name, int **ids, int *n, srv_reject *why) {
    const int count = cJSON_GetArraySize(a);
    if (count == 0) return reject(why, name, "'%s' is an empty list of tokens", name);
    if (!(*ids = malloc((size_t)count * sizeof **ids))) return reject(why, "", "out of memory");
    int i = 0;
    for (const cJSON *e = a->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble > 2147483647.0)
            return reject(why, name, "'%s' must be a string or a list of token ids (element %d is not one)", name, i);
        (*ids)[i] = (int)e->valuedouble;
    }
    *n = count;
    return 0;
}

static int parse_prompt(srv_request *r, const cJSON *body, srv_reject *why) {
    const cJSON *p = field(body, "prompt");
    if (!p) return reject(why, "prompt", "'prompt' is required");
    if (cJSON_IsArray(p)) {
        const int n = cJSON_GetArraySize(p);
        if (n == 0) return reject(why, "prompt", "'prompt' is an empty list");
        if (cJSON_IsNumber(p->child)) return get_ids(p, "prompt", &r->prompt_ids, &r->n_prompt_ids, why);
        if (n > 1) return reject(why, "prompt", "'prompt' holds %d prompts; one per request is supported", n);
        p = p->child; /* one string, or one list of ids */
        if (cJSON_IsArray(p)) return get_ids(p, "prompt", &r->prompt_ids, &r->n_prompt_ids, why);
    }
    if (!cJSON_IsString(p)) return reject(why, "prompt", "'prompt' must be a string or a list of token ids");
    r->prompt_len = strlen(p->valuestring);
    if (!(r->prompt = dup_n(p->valuestring, r->prompt_len))) return reject(why, "", "out of memory");
    return 0;
}

/* A message's content: a string, null, or a list of text parts. */
static int message_content(const cJSON *c, int i, char **out, srv_reject *why) {
    if (!c || cJSON_IsString(c)) {
        const char *s = c ? c->valuestring : "";
        return (*out = dup_n(s, strlen(s))) ? 0 : reject(why, "", "out of memory");
    }
    if (!cJSON_IsArray(c)) return reject(why, "messages", "messages[%d].content must be a string or a list of parts", i);
    size_t len = 0;
    for (const cJSON *part = c->child; part; part = part->next) {
        const cJSON *type = field(part, "type"), *text = field(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type))
            return reject(why, "messages", "messages[%d].content holds a part without a type", i);
        if (strcmp(type->valuestring, "text") != 0)
            return reject(why, "messages", "messages[%d].content: parts of type '%.40s' are not supported (text only)",
                          i, type->valuestring);
        if (!cJSON_IsString(text)) return reject(why, "messages", "messages[%d].content: a text part needs 'text'", i);
        len += strlen(text->valuestring);
    }
    if (!(*out = malloc(len + 1))) return reject(why, "", "out of memory");
    size_t at = 0;
    for (const cJSON *part = c->child; part; part = part->next) {
        const char *t = field(part, "text")->valuestring;
        memcpy(*out + at, t, strlen(t));
        at += strlen(t);
    }
    (*out)[at] = '\0';
    return 0;
}

static int parse_messages(srv_request *r, const cJSON *body, srv_reject *why) {
    const cJSON *m = field(body, "messages");
    if (!m) return reject(why, "messages", "'messages' is required");
    if (!cJSON_IsArray(m)) return reject(why, "messages", "'messages' must be a list");
    const int n = cJSON_GetArraySize(m);
    if (n == 0) return reject(why, "messages", "'messages' is empty");
    if (!(r->msgs = calloc((size_t)n, sizeof *r->msgs))) return reject(why, "", "out of memory");
    int i = 0;
    for (const cJSON *e = m->child; e; e = e->next, i++) {
        const cJSON *role = cJSON_IsObject(e) ? field(e, "role") : NULL;
        if (!cJSON_IsObject(e)) return reject(why, "messages", "messages[%d] must be an object", i);
        if (!cJSON_IsString(role)) return reject(why, "messages", "messages[%d].role must be a string", i);
        r->n_msgs = i + 1;
        if (!(r->msgs[i].role = dup_n(role->valuestring, strlen(role->valuestring))))
            return reject(why, "", "out of memory");
        if (message_content(field(e, "content"), i, &r->msgs[i].content, why)) return -1;
    }
    return 0;
}

static int parse_stop(srv_request *r, const cJSON *body, srv_reject *why) {
    const cJSON *s = field(body, "stop");
    if (!s) return 0;
    const cJSON *one = cJSON_IsString(s) ? s : NULL;
    if (!one && !cJSON_IsArray(s)) return reject(why, "stop", "'stop' must be a string or a list of strings");
    if (!one && cJSON_GetArraySize(s) > SRV_MAX_STOP)
        return reject(why, "stop", "'stop' holds %d strings, at most %d are supported", cJSON_GetArraySize(s),
                      SRV_MAX_STOP);
    for (const cJSON *e = one ? one : s->child; e; e = one ? NULL : e->next) {
        if (!cJSON_IsString(e)) return reject(why, "stop", "'stop' must be a string or a list of strings");
        const size_t len = strlen(e->valuestring);
        if (len > SRV_MAX_STOP_LEN)
            return reject(why, "stop", "a stop string of %zu bytes is longer than %d", len, SRV_MAX_STOP_LEN);
        if (len == 0) continue; /* matches nothing */
        if (!(r->stop[r->n_stop] = dup_n(e->valuestring, len))) return reject(why, "", "out of memory");
        r->n_stop++;
    }
    return 0;
}

/* Known OpenAI fields q35 does not run: refused when set to anything but
 * their neutral value. */
static int unsupported(const cJSON *body, srv_reject *why) {
    const cJSON *f;
    double v = 1;
    if (get_int(body, "n", -1e9, 1e9, &v, NULL, why)) return -1;
    if (v != 1) return reject(why, "n", "'n' is %.0f; one choice per request is supported (n = 1)", v);
    v = 1;
    if (get_int(body, "best_of", -1e9, 1e9, &v, NULL, why)) return -1;
    if (v != 1) return reject(why, "best_of", "'best_of' is %.0f; only 1 is supported", v);
    int echo = 0;
    if (get_bool(body, "echo", &echo, why)) return -1;
    if (echo) return reject(why, "echo", "'echo' is not supported");
    if ((f = field(body, "suffix")) && !(cJSON_IsString(f) && !*f->valuestring))
        return reject(why, "suffix", "'suffix' is not supported");
    if ((f = field(body, "logit_bias")) && !(cJSON_IsObject(f) && !f->child))
        return reject(why, "logit_bias", "'logit_bias' is not supported");
    if ((f = field(body, "tools")) && !(cJSON_IsArray(f) && !f->child))
        return reject(why, "tools", "'tools' is not supported");
    if ((f = field(body, "functions")) && !(cJSON_IsArray(f) && !f->child))
        return reject(why, "functions", "'functions' is not supported");
    if ((f = field(body, "response_format"))) {
        const cJSON *t = cJSON_IsObject(f) ? field(f, "type") : NULL;
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") != 0)
            return reject(why, "response_format", "'response_format' other than {\"type\": \"text\"} is not supported");
    }
    return 0;
}

static int parse_sampling(srv_request *r, const cJSON *body, srv_reject *why) {
    double v;
    q35_sampler_params *sp = &r->sp;
    v = sp->temperature;
    if (get_number(body, "temperature", 0, 100, &v, why)) return -1;
    sp->temperature = (float)v;
    v = sp->top_p;
    if (get_number(body, "top_p", 0, 1, &v, why)) return -1;
    sp->top_p = v > 0 ? (float)v : 1e-9f; /* 0: only the most likely token */
    v = sp->top_k;
    if (get_int(body, "top_k", 0, 1e9, &v, NULL, why)) return -1;
    sp->top_k = (int)v;
    v = sp->min_p;
    if (get_number(body, "min_p", 0, 1, &v, why)) return -1;
    sp->min_p = (float)v;
    v = sp->repeat_penalty;
    if (get_number(body, "repeat_penalty", 1e-6, 1e6, &v, why)) return -1;
    sp->repeat_penalty = (float)v;
    v = sp->repeat_last_n;
    if (get_int(body, "repeat_last_n", 0, 1e9, &v, NULL, why)) return -1;
    sp->repeat_last_n = (int)v;
    v = 0;
    if (get_number(body, "presence_penalty", -2, 2, &v, why)) return -1;
    r->presence_penalty = (float)v;
    v = 0;
    if (get_number(body, "frequency_penalty", -2, 2, &v, why)) return -1;
    r->frequency_penalty = (float)v;
    v = 0;
    if (get_int(body, "seed", -9.2e18, 1.8e19, &v, &r->have_seed, why)) return -1;
    if (r->have_seed) sp->seed = v < 0 ? (uint64_t)(int64_t)v : (uint64_t)v;
    return 0;
}

static int parse_output(srv_request *r, const cJSON *body, srv_reject *why) {
    double v = -1;
    int given = 0;
    const char *mt = r->kind == SRV_CHAT && field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (get_int(body, mt, -1e18, 1e18, &v, &given, why)) return -1;
    if (given && v < 1) return reject(why, mt, "'%s' is %.0f; it must be at least 1", mt, v);
    r->max_tokens = given ? (v > 1e9 ? 1000000000 : (int)v) : -1;
    if (get_bool(body, "stream", &r->stream, why) || get_bool(body, "ignore_eos", &r->ignore_eos, why)) return -1;
    const cJSON *so = field(body, "stream_options");
    if (so && !cJSON_IsObject(so)) return reject(why, "stream_options", "'stream_options' must be an object");
    if (so && get_bool(so, "include_usage", &r->include_usage, why)) return -1;
    const cJSON *lp = field(body, "logprobs");
    if (r->kind == SRV_CHAT) {
        if (get_bool(body, "logprobs", &r->logprobs, why)) return -1;
        v = 0;
        if (get_int(body, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &v, &given, why)) return -1;
        if (given && !r->logprobs) return reject(why, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        r->top_logprobs = (int)v;
    } else if (lp) { /* completions: the number of alternatives */
        if (cJSON_IsBool(lp)) {
            r->logprobs = cJSON_IsTrue(lp);
        } else {
            v = 0;
            if (get_int(body, "logprobs", 0, SRV_MAX_TOP_LOGPROBS, &v, NULL, why)) return -1;
            r->logprobs = 1;
            r->top_logprobs = (int)v;
        }
    }
    return 0;
}

int srv_request_parse(srv_request *r, int kind, const char *body, size_t len, srv_reject *why) {
    memset(r, 0, sizeof *r);
    memset(why, 0, sizeof *why);
    r->kind = kind;
    r->sp = q35_sampler_defaults(0);
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j) return reject(why, "", "the body is not valid JSON");
    int rc = -1;
    const cJSON *model = field(j, "model");
    if (!cJSON_IsObject(j)) reject(why, "", "the body must be a JSON object");
    else if (model && !cJSON_IsString(model)) reject(why, "model", "'model' must be a string");
    else if (kind == SRV_CHAT ? parse_messages(r, j, why) : parse_prompt(r, j, why)) {
    } else if (unsupported(j, why) || parse_sampling(r, j, why) || parse_stop(r, j, why) || parse_output(r, j, why)) {
    } else rc = 0;
    cJSON_Delete(j);
    if (rc) srv_request_free(r);
    return rc;
}

void srv_request_free(srv_request *r) {
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_msgs; i++) {
        free(r->msgs[i].role);
        free(r->msgs[i].content);
    }
    free(r->msgs);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    const int kind = r->kind;
    memset(r, 0, sizeof *r);
    r->kind = kind;
}
