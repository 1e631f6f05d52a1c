/* gguf_vocab.c — the tokenizer of a GGUF file (tokenizer.ggml.*), read
 * through io's GGUF parser whatever general.architecture says, as
 * llama.cpp reads it (llama_vocab::impl::load); and the same keys written
 * for a tokenizer (q35_tokenizer_gguf_keys).
 *
 *  - "llama": SentencePiece BPE by scores (spm.c); U+2581 read as ' ';
 *    add_space_prefix (default on), remove_extra_whitespaces (default off);
 *    ids default to llama.cpp's (BOS 1, EOS 2, UNK 0); add_bos on.
 *  - "gpt2": byte-level BPE; merges required; tokenizer.ggml.pre names the
 *    regexes (gguf_pre.c; none: "default", as llama.cpp); BOS and EOS
 *    default to 11 as llama.cpp's do.
 *  - "gemma4": BPE over UTF-8 with spaces as U+2581, newline runs split
 *    off, <0xNN> byte fallback, add_bos forced on (llama.cpp's workaround).
 * Token types from token_type (CONTROL, USER_DEFINED and UNKNOWN tokens
 * are split out of text; CONTROL and UNKNOWN only with
 * Q35_TOKENIZE_PARSE_SPECIAL). End-of-turn and end-of-generation tokens
 * as vocab.c says. Refused, each with one line: another tokenizer model,
 * an unknown pre-tokenizer, arrays of the wrong type or length, special
 * ids past the vocabulary, merges naming unknown tokens, a byte-level
 * vocabulary with a token twice. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_internal.h"
#include "tokenizer/gguf_pre.h"
#include "tokenizer/tok_internal.h"

#define MAX_TOKENS (1u << 22)

typedef struct gmeta {
    const q35_gguf *g;
    const char *path;
    q35_error *err;
} gmeta;

static int wrong_type(const gmeta *m, const char *key, const char *want) {
    return q35_fail(m->err, Q35_ERR_FORMAT, "%s: key '%s' is not %s", m->path, key, want);
}

static int key_str(const gmeta *m, const char *key, const char **s, uint64_t *len) {
    const q35_gguf_value *v = q35_gguf_find(m->g, key);
    *s = NULL;
    *len = 0;
    if (!v) return Q35_OK;
    if (v->type != Q35_GGUF_STRING) return wrong_type(m, key, "a string");
    *s = v->v.str.data ? v->v.str.data : "";
    *len = v->v.str.len;
    return Q35_OK;
}

/* An array of t1 (or t2) with n elements (n = 0: any); NULL if absent. */
static int key_array(const gmeta *m, const char *key, int t1, int t2, uint64_t n,
                     const q35_gguf_value **out) {
    const q35_gguf_value *v = q35_gguf_find(m->g, key);
    *out = NULL;
    if (!v) return Q35_OK;
    if (v->type != Q35_GGUF_ARRAY || (v->v.arr.elem_type != t1 && v->v.arr.elem_type != t2))
        return q35_fail(m->err, Q35_ERR_FORMAT, "%s: key '%s' is not an array of %s", m->path, key,
                        q35_gguf_type_name(t1));
    if (n && v->v.arr.n != n)
        return q35_fail(m->err, Q35_ERR_FORMAT, "%s: key '%s' has %llu elements, not %llu",
                        m->path, key, (unsigned long long)v->v.arr.n, (unsigned long long)n);
    *out = v;
    return Q35_OK;
}

/* A boolean key; *out unchanged when absent. */
static int key_bool(const gmeta *m, const char *key, int *out) {
    const q35_gguf_value *v = q35_gguf_find(m->g, key);
    if (!v) return Q35_OK;
    if (v->type != Q35_GGUF_BOOL) return wrong_type(m, key, "a bool");
    *out = v->v.u != 0;
    return Q35_OK;
}

/* A token id key; *out unchanged when absent; 0xFFFFFFFF or -1 is none. */
static int key_id(const gmeta *m, const char *key, int n, int *out) {
    const q35_gguf_value *v = q35_gguf_find(m->g, key);
    if (!v) return Q35_OK;
    int64_t x;
    if (v->type == Q35_GGUF_UINT8 || v->type == Q35_GGUF_UINT16 || v->type == Q35_GGUF_UINT32 ||
        v->type == Q35_GGUF_UINT64)
        x = v->v.u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v->v.u;
    else if (v->type == Q35_GGUF_INT8 || v->type == Q35_GGUF_INT16 || v->type == Q35_GGUF_INT32 ||
             v->type == Q35_GGUF_INT64)
        x = v->v.i;
    else
        return wrong_type(m, key, "an integer");
    if (x == UINT32_MAX || x == -1) {
        *out = -1;
        return Q35_OK;
    }
    if (x < 0 || x >= n)
        return q35_fail(m->err, Q35_ERR_FORMAT,
                        "%s: key '%s' = %lld is not a token id (the vocabulary has %d)", m->path,
                        key, (long long)x, n);
    *out = (int)x;
    return Q35_OK;
}

static int str_is(const char *s, uint64_t n, const char *want) {
    return s && n == strlen(want) && memcmp(s, want, n) == 0;
}

/* ---- the pieces ---------------------------------------------------------- */

enum { KIND_LLAMA, KIND_GPT2, KIND_GEMMA4, KIND_BERT };

/* s[0..n) as stored: U+2581 -> ' ' (llama), GPT-2's alphabet -> bytes
 * (gpt2; *raw set), else as it is. Returns the stored length. */
static uint32_t store_piece(int kind, const uint8_t *s, uint64_t n, char *dst, int *raw) {
    uint32_t k = 0;
    *raw = 0;
    if (kind == KIND_LLAMA) {
        for (uint64_t i = 0; i < n; i++) {
            if (i + 2 < n && s[i] == 0xe2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                dst[k++] = ' ';
                i += 2;
            } else {
                dst[k++] = (char)s[i];
            }
        }
        return k;
    }
    if (kind == KIND_GPT2) {
        for (uint64_t i = 0; i < n;) {
            uint32_t cp;
            size_t l = tok_utf8_next(s + i, n - i, &cp);
            int b = l ? tok_cp_to_byte(cp) : -1;
            if (b < 0) break;
            dst[k++] = (char)b;
            i += l;
            if (i == n) {
                *raw = 1;
                return k;
            }
        }
    }
    memcpy(dst, s, n);
    return (uint32_t)n;
}

typedef struct arrays {
    const char **pieces;
    uint32_t *lens;
    float *scores;
    int32_t *types;
    uint8_t *raw;
    char *bytes;
} arrays;

static void arrays_free(arrays *a) {
    free(a->pieces);
    free(a->lens);
    free(a->scores);
    free(a->types);
    free(a->raw);
    free(a->bytes);
}

static int gather(const gmeta *m, int kind, const q35_gguf_value *tokens,
                  const q35_gguf_value *scores, const q35_gguf_value *types, arrays *a) {
    uint64_t n = tokens->v.arr.n;
    a->pieces = malloc(n * sizeof *a->pieces);
    a->lens = malloc(n * sizeof *a->lens);
    a->scores = calloc(n, sizeof *a->scores);
    a->types = malloc(n * sizeof *a->types);
    a->raw = calloc(n, 1);
    a->bytes = malloc(tokens->v.arr.raw_len + 1);
    if (!a->pieces || !a->lens || !a->scores || !a->types || !a->raw || !a->bytes)
        return q35_fail(m->err, Q35_ERR_NOMEM, "%s: out of memory for %llu tokens", m->path,
                        (unsigned long long)n);
    uint64_t pos = 0, at = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        uint64_t len;
        int raw;
        if (q35_gguf_array_next_str(tokens, &pos, &s, &len) || len > UINT32_MAX)
            return q35_fail(m->err, Q35_ERR_FORMAT, "%s: token %llu is malformed", m->path,
                            (unsigned long long)i);
        a->pieces[i] = a->bytes + at;
        a->lens[i] = store_piece(kind, (const uint8_t *)s, len, a->bytes + at, &raw);
        a->raw[i] = (uint8_t)raw;
        at += a->lens[i];
    }
    for (uint64_t i = 0; i < n; i++) {
        if (scores && scores->v.arr.elem_type == Q35_GGUF_FLOAT32)
            memcpy(&a->scores[i], scores->v.arr.raw + 4 * i, 4);
        else if (scores) {
            int32_t x;
            memcpy(&x, scores->v.arr.raw + 4 * i, 4);
            a->scores[i] = (float)x;
        }
        int32_t ty = Q35_PIECE_NORMAL;
        if (types) memcpy(&ty, types->v.arr.raw + 4 * i, 4);
        if (ty == 0 || ty < 0 || ty > Q35_PIECE_BYTE) ty = Q35_PIECE_NORMAL; /* undefined */
        a->types[i] = ty;
    }
    return Q35_OK;
}

/* ---- merges -------------------------------------------------------------- */

static int read_merges(const gmeta *m, q35_tokenizer *t, int kind, const q35_gguf_value *merges) {
    uint64_t n = merges->v.arr.n, pos = 0;
    if (n > MAX_TOKENS * 4ull)
        return q35_fail(m->err, Q35_ERR_FORMAT, "%s: %llu merges are too many", m->path,
                        (unsigned long long)n);
    if (tok_merges_init(t, (int)n))
        return q35_fail(m->err, Q35_ERR_NOMEM, "%s: out of memory for the merges", m->path);
    char *buf = malloc(2 * (size_t)t->max_piece_len + 16);
    size_t cap = 2 * (size_t)t->max_piece_len + 16;
    int rc = buf ? Q35_OK : q35_fail(m->err, Q35_ERR_NOMEM, "%s: out of memory", m->path);
    for (uint64_t r = 0; r < n && !rc; r++) {
        const char *s;
        uint64_t len;
        int raw;
        if (q35_gguf_array_next_str(merges, &pos, &s, &len))
            return free(buf), q35_fail(m->err, Q35_ERR_FORMAT, "%s: merge %llu is malformed",
                                       m->path, (unsigned long long)r);
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL; /* find(' ', 1) */
        if (!sp) {
            rc = q35_fail(m->err, Q35_ERR_FORMAT, "%s: merge %llu \"%.*s\" is not \"a b\"", m->path,
                          (unsigned long long)r, (int)(len < 48 ? len : 48), s);
            break;
        }
        uint64_t la = (uint64_t)(sp - s), lb = len - la - 1;
        if (la + lb > cap) {
            rc = q35_fail(m->err, Q35_ERR_FORMAT,
                          "%s: merge %llu is longer than any two tokens", m->path,
                          (unsigned long long)r);
            break;
        }
        uint32_t ka = store_piece(kind, (const uint8_t *)s, la, buf, &raw);
        int ia = tok_lookup(t, buf, ka);
        uint32_t kb = store_piece(kind, (const uint8_t *)sp + 1, lb, buf + ka, &raw);
        int ib = tok_lookup(t, buf + ka, kb);
        int id = tok_lookup(t, buf, ka + kb);
        if (ia < 0 || ib < 0 || id < 0) {
            const char *which = ia < 0 ? "first" : ib < 0 ? "second" : "merged";
            rc = q35_fail(m->err, Q35_ERR_FORMAT,
                          "%s: merge %llu \"%.*s\": its %s token is not in the vocabulary",
                          m->path, (unsigned long long)r, (int)(len < 48 ? len : 48), s, which);
            break;
        }
        tok_merge_add(t, ia, ib, id, (uint32_t)r, 0);
    }
    free(buf);
    return rc;
}

/* ---- the BPE models ------------------------------------------------------ */

static int add_step(q35_tokenizer *t, tok_step **v, int *n, tok_step st) {
    tok_step *g = realloc(*v, (size_t)(*n + 1) * sizeof *g);
    if (!g) return Q35_ERR_NOMEM;
    *v = g;
    g[(*n)++] = st;
    (void)t;
    return Q35_OK;
}

static char *dup_bytes(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n), d[n] = '\0';
    return d;
}

/* The pieces of a BPE or WordPiece vocabulary with their types: control
 * and unknown pieces are special added tokens, user-defined ones added. */
static q35_tokenizer *new_vocab(const gmeta *m, const arrays *a, int n, int model) {
    uint64_t total = 0, at = 0;
    for (int i = 0; i < n; i++) total += a->lens[i] + 1;
    q35_tokenizer *t = tok_alloc(n, total);
    if (!t) {
        q35_fail(m->err, Q35_ERR_NOMEM, "%s: out of memory for %d tokens", m->path, n);
        return NULL;
    }
    t->model = model;
    for (int i = 0; i < n; i++) {
        tok_set_piece(t, i, a->pieces[i], a->lens[i], &at);
        t->type[i] = (uint8_t)a->types[i];
        t->score[i] = a->scores[i];
        t->flags[i] = PF_MODEL;
        if (t->type[i] == Q35_PIECE_CONTROL || t->type[i] == Q35_PIECE_UNKNOWN)
            t->flags[i] |= PF_ADDED | PF_SPECIAL;
        else if (t->type[i] == Q35_PIECE_USER_DEFINED)
            t->flags[i] |= PF_ADDED;
    }
    return t;
}

static int build_bpe(const gmeta *m, int kind, const arrays *a, int n,
                     const q35_gguf_value *merges, const char *pre, uint64_t pre_len,
                     q35_tokenizer **out) {
    q35_tokenizer *t = new_vocab(m, a, n, TOK_BPE);
    if (!t) return m->err ? m->err->code : Q35_ERR_NOMEM;
    t->byte_level = kind == KIND_GPT2;
    t->bpe_unk = -1;
    int rc = Q35_OK;
    for (int i = 0; i < n; i++) {
        if (kind == KIND_GEMMA4 || a->raw[i]) t->flags[i] |= PF_INDEXED;
        if (a->raw[i]) t->flags[i] |= PF_RAW;
        if (a->raw[i] && a->lens[i] == 1 && t->raw_byte_id[(uint8_t)a->pieces[i][0]] < 0)
            t->raw_byte_id[(uint8_t)a->pieces[i][0]] = i;
        int b = kind == KIND_GEMMA4 ? tok_byte_piece(a->pieces[i], a->lens[i]) : -1;
        if (b >= 0 && t->byte_id[b] < 0) t->byte_id[b] = i;
    }
    if (tok_index(t, PF_INDEXED)) rc = Q35_ERR_NOMEM;
    for (int i = 0; i < n && !rc; i++) {
        if (!(t->flags[i] & PF_INDEXED)) continue;
        int first = tok_lookup(t, t->bytes + t->off[i], t->len[i]);
        if (first != i)
            rc = q35_fail(m->err, Q35_ERR_FORMAT, "%s: token %d \"%.48s\" repeats token %d",
                          m->path, i, a->pieces[i], first);
    }
    if (rc == Q35_ERR_NOMEM) rc = q35_fail(m->err, rc, "%s: out of memory", m->path);
    if (!rc) rc = read_merges(m, t, kind, merges);
    if (!rc && kind == KIND_GEMMA4) {
        t->byte_fallback = 1;
        t->whole_newlines = 1;
        t->add_bos = 1;
        tok_step rep = {.kind = N_REPLACE, .s1 = dup_bytes(" ", 1), .n1 = 1,
                        .s2 = dup_bytes("\xe2\x96\x81", 3), .n2 = 3};
        tok_step drep = {.kind = D_REPLACE, .s1 = dup_bytes("\xe2\x96\x81", 3), .n1 = 3,
                         .s2 = dup_bytes(" ", 1), .n2 = 1};
        tok_step split = {.kind = P_SPLIT, .a = SPLIT_ISOLATED,
                          .re = tok_regex("[^\\n]+|[\\n]+", 13, 1, m->path, m->err)};
        tok_step bf = {.kind = D_BYTEFALLBACK};
        if (!rep.s1 || !rep.s2 || !drep.s1 || !drep.s2 || !split.re ||
            add_step(t, &t->norm, &t->n_norm, rep) || add_step(t, &t->pre, &t->n_pre, split) ||
            add_step(t, &t->dec, &t->n_dec, drep) || add_step(t, &t->dec, &t->n_dec, bf))
            rc = split.re ? q35_fail(m->err, Q35_ERR_NOMEM, "%s: out of memory", m->path)
                          : (m->err ? m->err->code : Q35_ERR_FORMAT);
        snprintf(t->gguf_pre, sizeof t->gguf_pre, "gemma4");
    } else if (!rc) {
        const char *name = pre ? pre : "default";
        size_t name_len = pre ? (size_t)pre_len : 7;
        const q35_gguf_pre *p = q35_gguf_pre_find(name, name_len);
        if (!p)
            rc = q35_fail(m->err, Q35_ERR_UNSUPPORTED,
                          "%s: pre-tokenizer '%.*s' (tokenizer.ggml.pre) is not one q35 knows",
                          m->path, (int)(name_len < 48 ? name_len : 48), name);
        for (int k = 0; !rc && p->regex[k]; k++) {
            tok_step st = {.kind = P_SPLIT, .a = SPLIT_ISOLATED};
            st.re = tok_regex(p->regex[k], strlen(p->regex[k]), 1, m->path, m->err);
            if (!st.re) rc = m->err ? m->err->code : Q35_ERR_FORMAT;
            else if (add_step(t, &t->pre, &t->n_pre, st))
                rc = q35_fail(m->err, Q35_ERR_NOMEM, "%s: out of memory", m->path);
        }
        if (!rc) {
            t->ignore_merges = p->ignore_merges;
            t->add_bos = p->add_bos;
            if (n > 11 && !p->no_bos) t->bos = 11; /* llama.cpp's defaults */
            if (n > 11) t->eos = 11;
            snprintf(t->gguf_pre, sizeof t->gguf_pre, "%.*s", (int)name_len, name);
            tok_step bl = {.kind = D_BYTELEVEL};
            if (add_step(t, &t->dec, &t->n_dec, bl))
                rc = q35_fail(m->err, Q35_ERR_NOMEM, "%s: out of memory", m->path);
        }
    }
    if (rc) {
        tok_free(t);
        return rc;
    }
    snprintf(t->gguf_model, sizeof t->gguf_model, kind == KIND_GPT2 ? "gpt2" : "gemma4");
    *out = t;
    return Q35_OK;
}

/* ---- WordPiece ------------------------------------------------------------ */

static int build_wpm(const gmeta *m, const arrays *a, int n, q35_tokenizer **out) {
    q35_tokenizer *t = new_vocab(m, a, n, TOK_WPM);
    if (!t) return m->err ? m->err->code : Q35_ERR_NOMEM;
    t->wpm_lowercase = 1;
    for (int i = 0; i < n; i++) t->flags[i] |= PF_INDEXED;
    /* llama.cpp's defaults: [CLS] 101 in front, [SEP] 102 after, [UNK] 100 */
    int add_bos = 1, add_sep = 1, sep = n > 102 ? 102 : -1, rc;
    t->bos = n > 101 ? 101 : -1;
    t->unk = n > 100 ? 100 : -1;
    if ((rc = key_bool(m, "tokenizer.ggml.normalizer.lowercase", &t->wpm_lowercase))) goto fail;
    t->wpm_strip_accents = t->wpm_lowercase;
    tok_step rep = {.kind = D_REPLACE, .s1 = dup_bytes("\xe2\x96\x81", 3), .n1 = 3,
                    .s2 = dup_bytes(" ", 1), .n2 = 1};
    if ((rc = key_bool(m, "tokenizer.ggml.normalizer.strip_accents", &t->wpm_strip_accents)) ||
        (rc = key_bool(m, "tokenizer.ggml.add_bos_token", &add_bos)) ||
        (rc = key_bool(m, "tokenizer.ggml.add_sep_token", &add_sep)) ||
        (rc = key_id(m, "tokenizer.ggml.bos_token_id", n, &t->bos)) ||
        (rc = key_id(m, "tokenizer.ggml.unknown_token_id", n, &t->unk)) ||
        (rc = key_id(m, "tokenizer.ggml.seperator_token_id", n, &sep)))
        goto fail_step;
    t->prefix = malloc(sizeof *t->prefix);
    t->suffix = malloc(sizeof *t->suffix);
    if (!t->prefix || !t->suffix || !rep.s1 || !rep.s2 || add_step(t, &t->dec, &t->n_dec, rep)) {
        rc = q35_fail(m->err, Q35_ERR_NOMEM, "%s: out of memory", m->path);
        goto fail_step;
    }
    t->use_template = 1;
    if (add_bos && t->bos >= 0) t->prefix[t->n_prefix++] = t->bos;
    if (add_sep && sep >= 0) t->suffix[t->n_suffix++] = sep;
    if (tok_index(t, PF_INDEXED)) {
        rc = q35_fail(m->err, Q35_ERR_NOMEM, "%s: out of memory", m->path);
        goto fail;
    }
    snprintf(t->gguf_model, sizeof t->gguf_model, "bert");
    *out = t;
    return Q35_OK;
fail_step:
    free(rep.s1);
    free(rep.s2);
fail:
    tok_free(t);
    return rc;
}

/* ---- the reader ---------------------------------------------------------- */

/* llama.cpp strips the spaces after special tokens of Phi-3 (model name
 * "phi-3" / "phi3") when they are parsed: all but <unk>, <s>,
 * <|endoftext|>. */
static int set_phi3_rstrip(const gmeta *m, q35_tokenizer *t) {
    const char *name;
    uint64_t len;
    int rc = key_str(m, "general.name", &name, &len);
    if (rc || !name) return rc;
    char low[256];
    size_t k = len < sizeof low - 1 ? (size_t)len : sizeof low - 1;
    for (size_t i = 0; i < k; i++) low[i] = (char)tolower((unsigned char)name[i]);
    low[k] = '\0';
    if (!strstr(low, "phi-3") && !strstr(low, "phi3")) return Q35_OK;
    for (int i = 0; i < t->n; i++) {
        if (!(t->flags[i] & PF_ADDED) && !(t->len[i] == 4 && !memcmp(t->bytes + t->off[i], "</s>", 4)))
            continue;
        const char *s = t->bytes + t->off[i];
        uint32_t n = t->len[i];
        int keep = (n == 5 && !memcmp(s, "<unk>", 5)) || (n == 3 && !memcmp(s, "<s>", 3)) ||
                   (n == 13 && !memcmp(s, "<|endoftext|>", 13));
        if (!keep) t->flags[i] |= PF_RSTRIP;
    }
    return Q35_OK;
}

int q35_tokenizer_from_gguf(q35_tokenizer **out, const q35_gguf *g, const char *path,
                            q35_error *err) {
    *out = NULL;
    gmeta m = {g, path, err};
    const char *model, *pre;
    uint64_t model_len, pre_len;
    int rc = key_str(&m, "tokenizer.ggml.model", &model, &model_len);
    if (rc || !model) return rc;
    int kind = str_is(model, model_len, "llama")    ? KIND_LLAMA
               : str_is(model, model_len, "gpt2")   ? KIND_GPT2
               : str_is(model, model_len, "gemma4") ? KIND_GEMMA4
               : str_is(model, model_len, "bert")   ? KIND_BERT
                                                    : -1;
    if (kind < 0)
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: tokenizer model '%.*s' is not supported (q35 reads 'llama', 'gpt2', "
                        "'gemma4' and 'bert')",
                        path, (int)(model_len > 48 ? 48 : model_len), model);
    const q35_gguf_value *tokens, *scores, *types, *merges;
    if ((rc = key_array(&m, "tokenizer.ggml.tokens", Q35_GGUF_STRING, -1, 0, &tokens))) return rc;
    if (!tokens)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: required key 'tokenizer.ggml.tokens' is missing",
                        path);
    uint64_t n = tokens->v.arr.n;
    if (n < 1 || n > MAX_TOKENS)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: %llu tokens (1 to %u are allowed)", path,
                        (unsigned long long)n, MAX_TOKENS);
    if ((rc = key_array(&m, "tokenizer.ggml.scores", Q35_GGUF_FLOAT32, Q35_GGUF_INT32, n, &scores)) ||
        (rc = key_array(&m, "tokenizer.ggml.token_type", Q35_GGUF_INT32, Q35_GGUF_UINT32, n,
                        &types)) ||
        (rc = key_array(&m, "tokenizer.ggml.merges", Q35_GGUF_STRING, -1, 0, &merges)) ||
        (rc = key_str(&m, "tokenizer.ggml.pre", &pre, &pre_len)))
        return rc;
    if ((kind == KIND_GPT2 || kind == KIND_GEMMA4) && !merges)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: tokenizer model '%.*s' needs tokenizer.ggml.merges",
                        path, (int)model_len, model);
    arrays a = {0};
    q35_tokenizer *t = NULL;
    rc = gather(&m, kind, tokens, scores, types, &a);
    if (!rc && kind == KIND_LLAMA) {
        q35_tokenizer_opts opts = {1, 0};
        int bos = n > 1 ? 1 : -1, eos = n > 2 ? 2 : -1, unk = 0;
        if ((rc = key_id(&m, "tokenizer.ggml.bos_token_id", (int)n, &bos)) ||
            (rc = key_id(&m, "tokenizer.ggml.eos_token_id", (int)n, &eos)) ||
            (rc = key_id(&m, "tokenizer.ggml.unknown_token_id", (int)n, &unk)) ||
            (rc = key_bool(&m, "tokenizer.ggml.add_space_prefix", &opts.add_dummy_prefix)) ||
            (rc = key_bool(&m, "tokenizer.ggml.remove_extra_whitespaces",
                           &opts.remove_extra_whitespaces)))
            goto done;
        rc = q35_tokenizer_new(&t, (int)n, a.pieces, a.lens, a.scores, a.types, bos, eos, unk,
                               &opts, err);
        if (rc && err) { /* name the file */
            char msg[sizeof err->msg];
            memcpy(msg, err->msg, sizeof msg);
            q35_fail(err, rc, "%s: %s", path, msg);
        }
    } else if (!rc && kind == KIND_BERT) {
        rc = build_wpm(&m, &a, (int)n, &t);
    } else if (!rc) {
        rc = build_bpe(&m, kind, &a, (int)n, merges, pre, pre_len, &t);
        if (!rc && (rc = key_id(&m, "tokenizer.ggml.bos_token_id", (int)n, &t->bos)) == 0 &&
            (rc = key_id(&m, "tokenizer.ggml.eos_token_id", (int)n, &t->eos)) == 0)
            rc = key_id(&m, "tokenizer.ggml.unknown_token_id", (int)n, &t->unk);
    }
    if (rc) goto done;
    if (pre) snprintf(t->gguf_pre, sizeof t->gguf_pre, "%.*s", (int)(pre_len < 47 ? pre_len : 47), pre);
    int force_bos = kind == KIND_GEMMA4;
    if ((rc = key_id(&m, "tokenizer.ggml.eot_token_id", (int)n, &t->eot)) ||
        (rc = key_id(&m, "tokenizer.ggml.eom_token_id", (int)n, &t->eom)) ||
        (kind != KIND_BERT && (rc = key_bool(&m, "tokenizer.ggml.add_bos_token", &t->add_bos))) ||
        (kind != KIND_BERT && (rc = key_bool(&m, "tokenizer.ggml.add_eos_token", &t->add_eos))) ||
        (kind == KIND_BERT && (rc = key_id(&m, "tokenizer.ggml.eos_token_id", (int)n, &t->eos))))
        goto done;
    if (force_bos) t->add_bos = 1;
    if (tok_finish_specials(t, 2) || (t->model == TOK_SPM && tok_spm_reindex(t))) {
        rc = q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < t->n; i++)
        if (t->type[i] == Q35_PIECE_CONTROL) t->flags[i] |= PF_SPECIAL | PF_ADDED;
    if ((rc = set_phi3_rstrip(&m, t))) goto done;
    tok_trie_free(&t->added_raw);
    memset(t->added_raw.root_child, 0xff, sizeof t->added_raw.root_child);
    rc = tok_build_added(t, m.path, err);
done:
    arrays_free(&a);
    if (rc) {
        tok_free(t);
        return rc;
    }
    *out = t;
    return Q35_OK;
}

int q35_tokenizer_load_gguf(q35_tokenizer **out, const char *path, q35_error *err) {
    q35_gguf *g = NULL;
    *out = NULL;
    int rc = q35_gguf_open(&g, path, err);
    if (!rc) rc = q35_tokenizer_from_gguf(out, g, path, err);
    q35_gguf_close(g);
    return rc;
}

/* ---- writing ------------------------------------------------------------- */

/* The tokenizer.ggml.pre name of a tokenizer.json pre-tokenizer llama.cpp
 * knows, or NULL. */
static const char *known_pre(const q35_tokenizer *t) {
    static const struct { const char *name, *regex; } known[] = {
        {"llama-bpe", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
        {"qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
        {"tekken", "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}"
                   "\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}"
                   "\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!"
                   "\\S)|\\s+"},
    };
    if (t->gguf_pre[0]) return t->gguf_pre;
    if (t->n_pre == 1 && t->pre[0].kind == P_BYTELEVEL && t->pre[0].b) return "gpt-2";
    if (t->n_pre == 2 && t->pre[0].kind == P_SPLIT && t->pre[0].s1 && t->pre[1].kind == P_BYTELEVEL &&
        !t->pre[1].b)
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (strcmp(t->pre[0].s1, known[i].regex) == 0) return known[i].name;
    return NULL;
}

/* A piece as GGUF spells it into b. */
static int spell(const q35_tokenizer *t, int id, tok_buf *b) {
    const char *s = t->bytes + t->off[id];
    uint32_t n = t->len[id];
    b->n = 0;
    for (uint32_t k = 0; k < n; k++) {
        int rc;
        if (t->flags[id] & PF_RAW) {
            uint32_t cp = tok_byte_to_cp((uint8_t)s[k]);
            char u[2] = {(char)cp, 0};
            if (cp < 0x80) rc = tok_buf_put(b, u, 1);
            else {
                u[0] = (char)(0xc0 | (cp >> 6));
                u[1] = (char)(0x80 | (cp & 0x3f));
                rc = tok_buf_put(b, u, 2);
            }
        } else if (t->model == TOK_SPM && s[k] == ' ') {
            rc = tok_buf_put(b, "\xe2\x96\x81", 3);
        } else {
            rc = tok_buf_put(b, s + k, 1);
        }
        if (rc) return rc;
    }
    return Q35_OK;
}

/* A token id as GGUF stores it: u32, 0xFFFFFFFF for none. */
static int set_id(q35_gguf_writer *wr, const char *key, int id, q35_error *err) {
    return q35_gguf_writer_set_u32(wr, key, id < 0 ? UINT32_MAX : (uint32_t)id, err);
}

static int set_bool(q35_gguf_writer *wr, const char *key, int v, q35_error *err) {
    q35_gguf_value x = {.type = Q35_GGUF_BOOL, .v.u = v ? 1 : 0};
    return q35_gguf_writer_set(wr, key, &x, err);
}

static int cmp_rank(const void *a, const void *b) {
    uint32_t x = ((const tok_merge *)a)->rank, y = ((const tok_merge *)b)->rank;
    return (x > y) - (x < y);
}

static int write_merges(const q35_tokenizer *t, q35_gguf_writer *wr, q35_error *err) {
    tok_merge *v = malloc((size_t)(t->n_merges ? t->n_merges : 1) * sizeof *v);
    const char **s = malloc((size_t)(t->n_merges ? t->n_merges : 1) * sizeof *s);
    uint64_t *lens = malloc((size_t)(t->n_merges ? t->n_merges : 1) * sizeof *lens);
    tok_buf all = {0}, a = {0}, b = {0};
    int rc = v && s && lens ? Q35_OK : Q35_ERR_NOMEM, k = 0;
    for (uint64_t i = 0; !rc && i <= t->merge_mask; i++)
        if (t->merges[i].key != UINT64_MAX) v[k++] = t->merges[i];
    if (!rc) qsort(v, (size_t)k, sizeof *v, cmp_rank);
    size_t *offs = rc ? NULL : malloc((size_t)(k ? k : 1) * sizeof *offs);
    if (!rc && !offs) rc = Q35_ERR_NOMEM;
    for (int i = 0; i < k && !rc; i++) {
        offs[i] = all.n;
        if ((rc = spell(t, (int)(v[i].key >> 32), &a)) || (rc = spell(t, (int)(uint32_t)v[i].key, &b)))
            break;
        if ((rc = tok_buf_put(&all, a.p, a.n)) || (rc = tok_buf_put(&all, " ", 1)) ||
            (rc = tok_buf_put(&all, b.p, b.n)))
            break;
        lens[i] = all.n - offs[i];
    }
    for (int i = 0; i < k && !rc; i++) s[i] = all.p + offs[i];
    if (!rc)
        rc = q35_gguf_writer_set_array(wr, "tokenizer.ggml.merges", Q35_GGUF_STRING, s, lens,
                                       (uint64_t)k, err);
    else
        rc = q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory for the merges");
    free(offs);
    free(v);
    free(s);
    free(lens);
    free(all.p);
    free(a.p);
    free(b.p);
    return rc;
}

int q35_tokenizer_gguf_keys(const void *tok, q35_gguf_writer *wr, q35_error *err) {
    const q35_tokenizer *t = tok;
    if (!t) return Q35_OK;
    /* BPE read from GGUF gpt2 / gemma4 or a byte-level tokenizer.json keeps
     * its model and merges; a SentencePiece-style tokenizer.json becomes
     * "llama" (scores from the merge ranks); WordPiece stays "bert" */
    int bpe = t->model == TOK_BPE && strcmp(t->gguf_model, "llama") != 0;
    int wpm = t->model == TOK_WPM;
    const char *pre = bpe && strcmp(t->gguf_model, "gpt2") == 0 ? known_pre(t) : NULL;
    if (bpe && strcmp(t->gguf_model, "gpt2") == 0 && !pre)
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "gguf writer: this tokenizer's pre-tokenizer has no llama.cpp name "
                        "(tokenizer.ggml.pre); it cannot be written to GGUF");
    int n = t->n;
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    uint64_t *lens = malloc((size_t)n * sizeof *lens);
    int32_t *types = malloc((size_t)n * sizeof *types);
    size_t *offs = malloc((size_t)n * sizeof *offs);
    tok_buf all = {0}, one = {0};
    int rc = pieces && lens && types && offs ? Q35_OK : Q35_ERR_NOMEM, unk = t->unk;
    for (int i = 0; i < n && !rc; i++) {
        offs[i] = all.n;
        if (!(rc = spell(t, i, &one))) rc = tok_buf_put(&all, one.p, one.n);
        lens[i] = one.n;
        types[i] = t->type[i];
        if (unk < 0 && types[i] == Q35_PIECE_UNKNOWN) unk = i;
    }
    for (int i = 0; i < n && !rc; i++) pieces[i] = all.p + offs[i];
    if (rc) rc = q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory for the vocabulary");
    if (!rc)
        rc = q35_gguf_writer_set_str(wr, "tokenizer.ggml.model",
                                     bpe || wpm ? t->gguf_model : "llama", err);
    if (!rc && pre) rc = q35_gguf_writer_set_str(wr, "tokenizer.ggml.pre", pre, err);
    if (!rc)
        rc = q35_gguf_writer_set_array(wr, "tokenizer.ggml.tokens", Q35_GGUF_STRING, pieces, lens,
                                       (uint64_t)n, err);
    if (!rc && !(bpe && t->byte_level))
        rc = q35_gguf_writer_set_array(wr, "tokenizer.ggml.scores", Q35_GGUF_FLOAT32, t->score,
                                       NULL, (uint64_t)n, err);
    if (!rc)
        rc = q35_gguf_writer_set_array(wr, "tokenizer.ggml.token_type", Q35_GGUF_INT32, types,
                                       NULL, (uint64_t)n, err);
    if (!rc && bpe) rc = write_merges(t, wr, err);
    if (!rc) rc = set_id(wr, "tokenizer.ggml.bos_token_id", t->bos, err);
    if (!rc) rc = set_id(wr, "tokenizer.ggml.eos_token_id", t->eos, err);
    if (!rc) rc = set_id(wr, "tokenizer.ggml.unknown_token_id", unk, err);
    if (!rc) rc = set_bool(wr, "tokenizer.ggml.add_bos_token", q35_tokenizer_add_bos(t), err);
    if (!rc && wpm) rc = set_id(wr, "tokenizer.ggml.seperator_token_id",
                                t->n_suffix ? t->suffix[0] : -1, err);
    if (!rc && wpm) rc = set_bool(wr, "tokenizer.ggml.add_sep_token", t->n_suffix > 0, err);
    if (!rc && wpm) rc = set_bool(wr, "tokenizer.ggml.normalizer.lowercase", t->wpm_lowercase, err);
    if (!rc && wpm)
        rc = set_bool(wr, "tokenizer.ggml.normalizer.strip_accents", t->wpm_strip_accents, err);
    if (!rc && !bpe && !wpm)
        rc = set_bool(wr, "tokenizer.ggml.add_space_prefix", t->opts.add_dummy_prefix, err);
    if (!rc && !bpe && !wpm)
        rc = set_bool(wr, "tokenizer.ggml.remove_extra_whitespaces", t->opts.remove_extra_whitespaces,
                      err);
    free(pieces);
    free(lens);
    free(types);
    free(offs);
    free(all.p);
    free(one.p);
    return rc;
}
