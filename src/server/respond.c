/* respond.c — OpenAI-shaped JSON (respond.h), built with cJSON. */
#include "server/respond.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "server/request.h"
#include "server/text.h"

/* Adds key: s[0..n) as a valid UTF-8 string; 0 or -1 (out of memory). */
static int add_text(cJSON *o, const char *key, const char *s, size_t n) {
    char *clean = srv_utf8_clean(s ? s : "", s ? n : 0, NULL);
    const int ok = clean && cJSON_AddStringToObject(o, key, clean);
    free(clean);
    return ok ? 0 : -1;
}

static char *print_free(cJSON *o, int ok) {
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *srv_json_error(const char *type, const char *param, const char *msg) {
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    int ok = e && add_text(e, "message", msg, strlen(msg)) == 0 && cJSON_AddStringToObject(e, "type", type) &&
             (param && *param ? cJSON_AddStringToObject(e, "param", param) != NULL
                              : cJSON_AddNullToObject(e, "param") != NULL) &&
             cJSON_AddNullToObject(e, "code");
    return print_free(o, ok);
}

static const char *finish_name(int finish) {
    return finish == SRV_FINISH_STOP ? "stop" : finish == SRV_FINISH_LENGTH ? "length" : NULL;
}

static int add_bytes(cJSON *o, const char *s, size_t n) {
    cJSON *a = cJSON_AddArrayToObject(o, "bytes");
    for (size_t i = 0; a && i < n; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)s[i]))) return -1;
    return a ? 0 : -1;
}

/* Chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}, ...], "refusal": null} */
static int chat_logprobs(const srv_resp *r, cJSON *choice, const srv_tok *toks, int n) {
    cJSON *lp = cJSON_AddObjectToObject(choice, "logprobs"), *content = lp ? cJSON_AddArrayToObject(lp, "content") : NULL;
    if (!content || !cJSON_AddNullToObject(lp, "refusal")) return -1;
    char *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        cJSON *e = cJSON_CreateObject(), *top = NULL;
        size_t len = 0;
        rc = !e || !cJSON_AddItemToArray(content, e) ||
             (len = q35_detokenize_all(r->m, toks[i].prev, toks[i].id, &buf, &cap)) == (size_t)-1 || add_text(e, "token", buf, len) ||
             !cJSON_AddNumberToObject(e, "logprob", toks[i].logprob) || add_bytes(e, buf, len) ||
             !(top = cJSON_AddArrayToObject(e, "top_logprobs"));
        for (int k = 0; k < toks[i].n_top && !rc; k++) {
            cJSON *t = cJSON_CreateObject();
            rc = !t || !cJSON_AddItemToArray(top, t) ||
                 (len = q35_detokenize_all(r->m, toks[i].prev, toks[i].top_id[k], &buf, &cap)) == (size_t)-1 ||
                 add_text(t, "token", buf, len) || !cJSON_AddNumberToObject(t, "logprob", toks[i].top_lp[k]) ||
                 add_bytes(t, buf, len);
        }
    }
    free(buf);
    return rc ? -1 : 0;
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs": [{text: logprob}], "text_offset"} */
static int completion_logprobs(const srv_resp *r, cJSON *choice, const srv_tok *toks, int n) {
    cJSON *lp = cJSON_AddObjectToObject(choice, "logprobs");
    cJSON *tk = lp ? cJSON_AddArrayToObject(lp, "tokens") : NULL, *tl = tk ? cJSON_AddArrayToObject(lp, "token_logprobs") : NULL;
    cJSON *top = tl ? cJSON_AddArrayToObject(lp, "top_logprobs") : NULL, *off = top ? cJSON_AddArrayToObject(lp, "text_offset") : NULL;
    if (!off) return -1;
    char *buf = NULL;
    size_t cap = 0;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        size_t len = q35_detokenize_all(r->m, toks[i].prev, toks[i].id, &buf, &cap);
        char *clean = len != (size_t)-1 ? srv_utf8_clean(buf, len, NULL) : NULL;
        cJSON *alt = cJSON_CreateObject();
        if (alt && !cJSON_AddItemToArray(top, alt)) {
            cJSON_Delete(alt);
            alt = NULL;
        }
        ok = clean && alt && cJSON_AddItemToArray(tk, cJSON_CreateString(clean)) &&
             cJSON_AddItemToArray(tl, cJSON_CreateNumber(toks[i].logprob)) &&
             cJSON_AddItemToArray(off, cJSON_CreateNumber((double)toks[i].offset));
        free(clean);
        for (int k = 0; k < toks[i].n_top && ok; k++) {
            len = q35_detokenize_all(r->m, toks[i].prev, toks[i].top_id[k], &buf, &cap);
            clean = len != (size_t)-1 ? srv_utf8_clean(buf, len, NULL) : NULL;
            ok = clean && cJSON_AddNumberToObject(alt, clean, toks[i].top_lp[k]);
            free(clean);
        }
    }
    free(buf);
    return ok ? 0 : -1;
}

/* {"id", "object", "created", "model", "choices": [choice]}; *choice
 * receives the choice object. */
static cJSON *envelope(const srv_resp *r, const char *object, cJSON **choice) {
    cJSON *o = cJSON_CreateObject(), *choices;
    *choice = NULL;
    if (!o || !cJSON_AddStringToObject(o, "id", r->id) || !cJSON_AddStringToObject(o, "object", object) ||
        !cJSON_AddNumberToObject(o, "created", (double)r->created) || add_text(o, "model", r->model, strlen(r->model)) ||
        !(choices = cJSON_AddArrayToObject(o, "choices")) || !(*choice = cJSON_CreateObject()) ||
        !cJSON_AddItemToArray(choices, *choice) || !cJSON_AddNumberToObject(*choice, "index", 0)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int add_usage(cJSON *o, int n_prompt, int n_gen) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    return u && cJSON_AddNumberToObject(u, "prompt_tokens", n_prompt) &&
                   cJSON_AddNumberToObject(u, "completion_tokens", n_gen) &&
                   cJSON_AddNumberToObject(u, "total_tokens", n_prompt + n_gen)
               ? 0
               : -1;
}

static int add_logprobs(const srv_resp *r, cJSON *choice, const srv_tok *toks, int n_toks) {
    if (!r->logprobs) return cJSON_AddNullToObject(choice, "logprobs") ? 0 : -1;
    return r->kind == SRV_CHAT ? chat_logprobs(r, choice, toks, n_toks) : completion_logprobs(r, choice, toks, n_toks);
}

static int add_finish(cJSON *choice, int finish) {
    const char *f = finish_name(finish);
    return (f ? cJSON_AddStringToObject(choice, "finish_reason", f) : cJSON_AddNullToObject(choice, "finish_reason"))
               ? 0
               : -1;
}

char *srv_json_final(const srv_resp *r, const char *text, size_t n, const srv_tok *toks, int n_toks, int finish,
                     int n_prompt, int n_gen) {
    cJSON *choice, *o = envelope(r, r->kind == SRV_CHAT ? "chat.completion" : "text_completion", &choice);
    if (!o) return NULL;
    int ok;
    if (r->kind == SRV_CHAT) {
        cJSON *msg = cJSON_AddObjectToObject(choice, "message");
        ok = msg && cJSON_AddStringToObject(msg, "role", "assistant") && add_text(msg, "content", text, n) == 0;
    } else {
        ok = add_text(choice, "text", text, n) == 0;
    }
    ok = ok && add_logprobs(r, choice, toks, n_toks) == 0 && add_finish(choice, finish) == 0 &&
         add_usage(o, n_prompt, n_gen) == 0;
    return print_free(o, ok);
}

char *srv_json_chunk(const srv_resp *r, const char *text, size_t n, const srv_tok *toks, int n_toks, int finish,
                     int role) {
    cJSON *choice, *o = envelope(r, r->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion", &choice);
    if (!o) return NULL;
    int ok;
    if (r->kind == SRV_CHAT) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        ok = delta && (!role || cJSON_AddStringToObject(delta, "role", "assistant")) &&
             (finish && !n ? 1 : add_text(delta, "content", text, n) == 0);
    } else {
        ok = add_text(choice, "text", text, n) == 0;
    }
    ok = ok && (n_toks ? add_logprobs(r, choice, toks, n_toks) == 0 : cJSON_AddNullToObject(choice, "logprobs") != NULL) &&
         add_finish(choice, finish) == 0;
    return print_free(o, ok);
}

char *srv_json_usage_chunk(const srv_resp *r, int n_prompt, int n_gen) {
    cJSON *o = cJSON_CreateObject();
    const int ok = o && cJSON_AddStringToObject(o, "id", r->id) &&
                   cJSON_AddStringToObject(o, "object", r->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion") &&
                   cJSON_AddNumberToObject(o, "created", (double)r->created) &&
                   add_text(o, "model", r->model, strlen(r->model)) == 0 && cJSON_AddArrayToObject(o, "choices") &&
                   add_usage(o, n_prompt, n_gen) == 0;
    return print_free(o, ok);
}
