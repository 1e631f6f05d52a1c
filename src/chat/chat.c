/* chat.c — the public chat-template calls: a template from source, from the
 * file a model or tokenizer comes in (GGUF tokenizer.chat_template; Hugging
 * Face tokenizer_config.json chat_template, a string or a list of {name,
 * template} whose "default" is taken; chat_template.jinja beside it), by a
 * built-in name or from a .jinja file; and rendering a conversation given
 * as the oracle script's JSON line. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat/chat.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "io/gguf.h"
#include "io/hf_internal.h"

#define PATH_CAP 4096

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        if (n) memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *dup_s(const char *s) { return dup_n(s, strlen(s)); }

int q35_chat_template_parse(q35_chat_template **out, const char *source, size_t len, const char *name,
                            q35_error *err) {
    *out = NULL;
    if (!source) return q35_fail(err, Q35_ERR_ARG, "q35_chat_template_parse: no source");
    q35_chat_template *t = calloc(1, sizeof *t);
    if (!t || !(t->source = dup_n(source, len)) || !(t->bos = dup_s("<s>")) || !(t->eos = dup_s("</s>"))) {
        q35_chat_template_free(t);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    }
    int rc = jinja_parse(&t->tpl, source, len, name, err);
    if (rc) {
        q35_chat_template_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void q35_chat_template_free(q35_chat_template *t) {
    if (!t) return;
    jinja_free(t->tpl);
    free(t->source);
    free(t->bos);
    free(t->eos);
    free(t);
}

const char *q35_chat_template_source(const q35_chat_template *t) { return t->source; }
const char *q35_chat_template_bos(const q35_chat_template *t) { return t->bos; }
const char *q35_chat_template_eos(const q35_chat_template *t) { return t->eos; }

int q35_chat_template_set_tokens(q35_chat_template *t, const char *bos, const char *eos, q35_error *err) {
    char *b = bos ? dup_s(bos) : NULL, *e = eos ? dup_s(eos) : NULL;
    if ((bos && !b) || (eos && !e)) {
        free(b);
        free(e);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    }
    if (b) {
        free(t->bos);
        t->bos = b;
    }
    if (e) {
        free(t->eos);
        t->eos = e;
    }
    return 0;
}

/* ---- templates from files ---------------------------------------------------------- */
static int parse_file(q35_chat_template **out, const char *path, q35_error *err) {
    char *t = NULL;
    size_t len;
    int rc = q35_read_file(path, &t, &len, err);
    if (!rc) rc = q35_chat_template_parse(out, t, len, path, err);
    free(t);
    return rc;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int sibling(char *out, const char *path, const char *name, q35_error *err) {
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
    if (dir + strlen(name) + 1 > PATH_CAP) return q35_fail(err, Q35_ERR_ARG, "%s: path too long", path);
    memcpy(out, path, dir);
    strcpy(out + dir, name);
    return 0;
}

static int no_template(const char *path, q35_error *err) {
    return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s has no chat template (q35 reads tokenizer.chat_template "
                                              "from GGUF, chat_template from tokenizer_config.json)", path);
}

/* bos_token / eos_token of tokenizer_config.json: a string or {"content": ...} */
static const char *config_token(const cJSON *root, const char *key) {
    const cJSON *v = q35_hf_member(root, key);
    if (cJSON_IsObject(v)) v = q35_hf_member(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int load_config(q35_chat_template **out, const char *path, q35_error *err) {
    char *text = NULL;
    size_t len;
    int rc = q35_read_file(path, &text, &len, err);
    if (rc) return rc;
    cJSON *root = q35_hf_json_parse(text, len, path, err);
    free(text);
    if (!root) return err ? err->code : Q35_ERR_FORMAT;
    const cJSON *ct = q35_hf_member(root, "chat_template");
    const char *src = NULL;
    if (!cJSON_IsObject(root)) rc = q35_fail(err, Q35_ERR_FORMAT, "%s: not a JSON object", path);
    else if (cJSON_IsString(ct)) src = ct->valuestring;
    else if (cJSON_IsArray(ct)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const cJSON *nm = q35_hf_member(e, "name"), *tp = q35_hf_member(e, "template");
            if (cJSON_IsObject(e) && q35_hf_is_string(nm, "default")) {
                if (!cJSON_IsString(tp))
                    rc = q35_fail(err, Q35_ERR_FORMAT, "%s: chat_template \"default\" has no template string", path);
                else src = tp->valuestring;
                break;
            }
        }
        if (!src && !rc)
            rc = q35_fail(err, Q35_ERR_FORMAT, "%s: chat_template is a list without one named \"default\"", path);
    } else if (!q35_hf_absent(ct))
        rc = q35_fail(err, Q35_ERR_FORMAT, "%s: chat_template is neither a string nor a list", path);
    char alt[PATH_CAP];
    if (!rc && !src) { /* newer transformers save it beside the config */
        if (!(rc = sibling(alt, path, "chat_template.jinja", err)) && file_exists(alt)) rc = parse_file(out, alt, err);
        else if (!rc) rc = no_template(path, err);
    } else if (!rc) rc = q35_chat_template_parse(out, src, strlen(src), path, err);
    if (!rc) {
        const char *b = config_token(root, "bos_token"), *e = config_token(root, "eos_token");
        rc = q35_chat_template_set_tokens(*out, b ? b : "", e ? e : "", err);
    }
    cJSON_Delete(root);
    if (rc && *out) {
        q35_chat_template_free(*out);
        *out = NULL;
    }
    return rc;
}

static int gguf_token(const q35_gguf *g, const char *key, const q35_gguf_value *tokens, char **out) {
    const q35_gguf_value *id = q35_gguf_find(g, key);
    q35_gguf_value piece;
    *out = NULL;
    if (!id || !tokens) return 0;
    uint64_t i;
    if (id->type == Q35_GGUF_INT32 || id->type == Q35_GGUF_INT64 || id->type == Q35_GGUF_INT8 ||
        id->type == Q35_GGUF_INT16) {
        if (id->v.i < 0) return 0;
        i = (uint64_t)id->v.i;
    } else if (id->type <= Q35_GGUF_UINT64 && id->type != Q35_GGUF_FLOAT32 && id->type != Q35_GGUF_STRING)
        i = id->v.u;
    else return 0;
    if (tokens->type != Q35_GGUF_ARRAY || tokens->v.arr.elem_type != Q35_GGUF_STRING || i >= tokens->v.arr.n ||
        q35_gguf_array_get(tokens, i, &piece))
        return 0;
    *out = dup_n(piece.v.str.data, piece.v.str.len);
    return *out ? 0 : -1;
}

static int load_gguf(q35_chat_template **out, const char *path, q35_error *err) {
    q35_gguf *g = NULL;
    int rc = q35_gguf_open(&g, path, err);
    if (rc) return rc;
    const q35_gguf_value *ct = q35_gguf_find(g, "tokenizer.chat_template");
    if (!ct) rc = no_template(path, err);
    else if (ct->type != Q35_GGUF_STRING)
        rc = q35_fail(err, Q35_ERR_FORMAT, "%s: tokenizer.chat_template is not a string", path);
    else rc = q35_chat_template_parse(out, ct->v.str.data, (size_t)ct->v.str.len, path, err);
    if (!rc) {
        const q35_gguf_value *tokens = q35_gguf_find(g, "tokenizer.ggml.tokens");
        char *b = NULL, *e = NULL;
        if (gguf_token(g, "tokenizer.ggml.bos_token_id", tokens, &b) ||
            gguf_token(g, "tokenizer.ggml.eos_token_id", tokens, &e))
            rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
        else rc = q35_chat_template_set_tokens(*out, b ? b : "", e ? e : "", err);
        free(b);
        free(e);
        if (rc) {
            q35_chat_template_free(*out);
            *out = NULL;
        }
    }
    q35_gguf_close(g);
    return rc;
}

static int is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    char m[4] = {0};
    if (!f) return 0;
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(m, "GGUF", 4) == 0;
}

int q35_chat_template_load(q35_chat_template **out, const char *path, q35_error *err) {
    *out = NULL;
    char p[PATH_CAP];
    if (!path || !*path) return q35_fail(err, Q35_ERR_ARG, "no path to read a chat template from");
    if (is_dir(path)) {
        size_t n = strlen(path);
        if (n + 40 > PATH_CAP) return q35_fail(err, Q35_ERR_ARG, "%s: path too long", path);
        snprintf(p, sizeof p, "%s%stokenizer_config.json", path, path[n - 1] == '/' ? "" : "/");
        if (file_exists(p)) return load_config(out, p, err);
        snprintf(p, sizeof p, "%s%schat_template.jinja", path, path[n - 1] == '/' ? "" : "/");
        if (file_exists(p)) return parse_file(out, p, err);
        return no_template(path, err);
    }
    if (!file_exists(path)) return q35_fail(err, Q35_ERR_IO, "%s: no such file or folder", path);
    if (is_gguf(path)) return load_gguf(out, path, err);
    if (ends_with(path, ".json")) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (strcmp(base, "tokenizer.json") == 0) {
            int rc = sibling(p, path, "tokenizer_config.json", err);
            if (rc) return rc;
            if (!file_exists(p)) return no_template(path, err);
            return load_config(out, p, err);
        }
        return load_config(out, path, err);
    }
    if (ends_with(path, ".jinja")) return q35_chat_template_named(out, path, err);
    /* a model file of a Hugging Face folder (model.safetensors): the folder's config */
    int rc = sibling(p, path, "tokenizer_config.json", err);
    if (rc) return rc;
    return file_exists(p) ? load_config(out, p, err) : no_template(path, err);
}

int q35_chat_template_named(q35_chat_template **out, const char *name_or_file, q35_error *err) {
    *out = NULL;
    if (!name_or_file || !*name_or_file) return q35_fail(err, Q35_ERR_ARG, "no chat template name or file");
    const char *src = q35_chat_builtin_source(name_or_file);
    if (src) {
        char nm[80];
        snprintf(nm, sizeof nm, "built-in template %s", name_or_file);
        return q35_chat_template_parse(out, src, strlen(src), nm, err);
    }
    if (!file_exists(name_or_file))
        return q35_fail(err, Q35_ERR_ARG, "chat template '%s': neither a built-in name (%s) nor a file", name_or_file,
                        q35_chat_builtin_names());
    return parse_file(out, name_or_file, err);
}

const char *q35_chat_template_names(void) { return q35_chat_builtin_names(); }

/* ---- rendering ----------------------------------------------------------------------- */
/* JavaScript's !!v for a JSON value */
static int js_truthy(const cJSON *v) {
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return 0;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0 && !isnan(v->valuedouble);
    if (cJSON_IsString(v)) return v->valuestring[0] != '\0';
    return 1;
}

static int put(cJSON *ctx, const char *key, cJSON *item) {
    if (!item) return -1;
    if (cJSON_GetObjectItemCaseSensitive(ctx, key)) return cJSON_ReplaceItemInObjectCaseSensitive(ctx, key, item) ? 0 : -1;
    return cJSON_AddItemToObject(ctx, key, item) ? 0 : -1;
}

int q35_chat_render(const q35_chat_template *t, const char *conversation, size_t len, const q35_chat_limits *lim,
                    char **out, size_t *out_len, q35_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    cJSON *conv = q35_hf_json_parse(conversation ? conversation : "", conversation ? len : 0, "conversation", err);
    if (!conv) return err ? err->code : Q35_ERR_FORMAT;
    int rc = 0;
    cJSON *ctx = NULL;
    if (!cJSON_IsObject(conv))
        rc = q35_fail(err, Q35_ERR_FORMAT, "conversation: not a JSON object ({\"messages\": [...], ...})");
    else if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(conv, "messages")))
        rc = q35_fail(err, Q35_ERR_FORMAT, "conversation: \"messages\" is missing or not a list");
    if (!rc) {
        /* {bos_token, eos_token, ...conversation, add_generation_prompt: !!its value} */
        int agp = js_truthy(cJSON_GetObjectItemCaseSensitive(conv, "add_generation_prompt"));
        if (!(ctx = cJSON_CreateObject()) || put(ctx, "bos_token", cJSON_CreateString(t->bos)) ||
            put(ctx, "eos_token", cJSON_CreateString(t->eos)))
            rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
        while (!rc && conv->child) {
            cJSON *item = cJSON_DetachItemViaPointer(conv, conv->child);
            char *key = item->string;
            item->string = NULL;
            if (strcmp(key, "add_generation_prompt") == 0) {
                cJSON_Delete(item);
                item = cJSON_CreateBool(agp);
            }
            if (put(ctx, key, item)) rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
            free(key);
        }
        if (!rc && !cJSON_GetObjectItemCaseSensitive(ctx, "add_generation_prompt") &&
            put(ctx, "add_generation_prompt", cJSON_CreateBool(0)))
            rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    }
    if (!rc) {
        jinja_limits jl = {0, 0, 0, 0};
        if (lim) {
            jl.max_steps = lim->max_steps;
            jl.max_depth = lim->max_depth;
            jl.max_output = lim->max_output;
            jl.max_memory = lim->max_memory;
        }
        size_t n = 0;
        rc = jinja_render(t->tpl, ctx, &jl, out, &n, err);
        if (!rc && out_len) *out_len = n;
    }
    cJSON_Delete(ctx);
    cJSON_Delete(conv);
    return rc;
}

int q35_chat_format(const char *template_source, const char *messages_json, int add_generation_prompt,
                    const char *extra_json, const char *bos_token, const char *eos_token, char **out,
                    size_t *out_len, q35_error *err) {
    *out = NULL;
    q35_chat_template *t = NULL;
    cJSON *conv = NULL, *msgs = NULL;
    char *line = NULL;
    int rc = q35_chat_template_parse(&t, template_source ? template_source : "",
                                     template_source ? strlen(template_source) : 0, "template", err);
    if (!rc) rc = q35_chat_template_set_tokens(t, bos_token ? bos_token : "", eos_token ? eos_token : "", err);
    if (!rc && extra_json) {
        if (!(conv = q35_hf_json_parse(extra_json, strlen(extra_json), "extra context", err))) rc = err ? err->code : Q35_ERR_FORMAT;
        else if (!cJSON_IsObject(conv)) rc = q35_fail(err, Q35_ERR_ARG, "extra context: not a JSON object");
    } else if (!rc && !(conv = cJSON_CreateObject()))
        rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    if (!rc && !(msgs = q35_hf_json_parse(messages_json ? messages_json : "", messages_json ? strlen(messages_json) : 0,
                                          "messages", err)))
        rc = err ? err->code : Q35_ERR_FORMAT;
    if (!rc && !cJSON_IsArray(msgs)) rc = q35_fail(err, Q35_ERR_ARG, "messages: not a JSON list");
    if (!rc) {
        if (put(conv, "messages", msgs) || put(conv, "add_generation_prompt", cJSON_CreateBool(add_generation_prompt)))
            rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
        msgs = NULL;
    }
    if (!rc && !(line = cJSON_PrintUnformatted(conv))) rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    if (!rc) rc = q35_chat_render(t, line, strlen(line), NULL, out, out_len, err);
    free(line);
    cJSON_Delete(msgs);
    cJSON_Delete(conv);
    q35_chat_template_free(t);
    return rc;
}

/* ---- tokens for rendered text ------------------------------------------------------------ */
static int push_ids(int **ids, int *n, int *cap, const int *add, int k) {
    if (*n + k > *cap) {
        int c = *cap ? *cap : 64;
        while (c < *n + k) c *= 2;
        int *p = realloc(*ids, (size_t)c * sizeof *p);
        if (!p) return -1;
        *ids = p;
        *cap = c;
    }
    if (k) memcpy(*ids + *n, add, (size_t)k * sizeof *add);
    *n += k;
    return 0;
}

int q35_chat_tokenize(const q35_model *m, const q35_chat_template *t, const char *text, size_t len, int **ids,
                      int *n_ids, q35_error *err) {
    *ids = NULL;
    *n_ids = 0;
    const char *sp[2] = {t->bos, t->eos};
    size_t sl[2] = {strlen(t->bos), strlen(t->eos)};
    int sid[2] = {q35_token_bos(m), q35_token_eos(m)};
    int *out = NULL, n = 0, cap = 0, rc = 0;
    size_t i = 0, from = 0;
    if (sid[0] >= 0 && push_ids(&out, &n, &cap, &sid[0], 1)) goto nomem;
    if (sid[0] >= 0 && sl[0] && len >= sl[0] && memcmp(text, sp[0], sl[0]) == 0) i = from = sl[0];
    while (i <= len) {
        int hit = -1;
        for (int k = 0; k < 2 && i < len; k++)
            if (sl[k] && sid[k] >= 0 && len - i >= sl[k] && memcmp(text + i, sp[k], sl[k]) == 0 &&
                (hit < 0 || sl[k] > sl[hit]))
                hit = k;
        if (hit < 0 && i < len) {
            i++;
            continue;
        }
        if (i > from) {
            int *piece = NULL, np = 0;
            if ((rc = q35_tokenizer_encode(q35_model_tokenizer(m), text + from, i - from, Q35_TOKENIZE_PARSE_SPECIAL,
                                           &piece, &np, err)))
                goto fail;
            int bad = push_ids(&out, &n, &cap, piece, np);
            free(piece);
            if (bad) goto nomem;
        }
        if (hit < 0) break;
        if (push_ids(&out, &n, &cap, &sid[hit], 1)) goto nomem;
        i += sl[hit];
        from = i;
    }
    *ids = out;
    *n_ids = n;
    return 0;
nomem:
    rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
fail:
    free(out);
    return rc;
}
