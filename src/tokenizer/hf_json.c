/* hf_json.c — tokenizer.json, as Hugging Face's tokenizers reads it, with
 * the special-token names of tokenizer_config.json.
 *
 * Read: model.type "BPE" (vocab, merges as "a b" strings or [a, b] pairs,
 * unk_token, byte_fallback, fuse_unk, ignore_merges), added_tokens (id,
 * content, special, single_word, lstrip, rstrip, normalized), the
 * normalizer (NFC, NFD, NFKC, NFKD, Replace, Prepend, Strip, Sequence),
 * the pre-tokenizer (Split, ByteLevel, Metaspace, Digits, Whitespace,
 * WhitespaceSplit, Sequence), the decoder (ByteLevel, Replace,
 * ByteFallback, Fuse, Strip, Metaspace, Sequence) and the post-processor
 * (TemplateProcessing's single template, Roberta/BertProcessing,
 * ByteLevel, Sequence). Anything else is Q35_ERR_UNSUPPORTED with a line
 * naming it: encoding without it would silently differ.
 *
 * Checked: model.vocab and added_tokens together give every id 0..n-1
 * exactly one spelling (an added token may repeat its vocab entry) and
 * every spelling one id; every merge names pieces of the vocabulary and
 * makes one; every regex compiles.
 *
 * A ByteLevel pre-tokenizer makes the vocabulary byte-level: its pieces
 * are stored as the bytes GPT-2's alphabet spells (pieces outside the
 * alphabet keep their text; BPE cannot make them from text).
 *
 * Kinds: special added tokens are CONTROL (UNKNOWN for model.unk_token),
 * other added tokens USER_DEFINED, <0xNN> pieces BYTE with byte_fallback,
 * the rest NORMAL. bos / eos: the names tokenizer_config.json gives, else
 * the template's first special token / common spellings. A piece's score
 * is -(rank of the first merge making it), below all of those when none
 * does (used when such a tokenizer is written to GGUF). */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "io/hf_internal.h"
#include "tokenizer/tok_internal.h"

#define MAX_PIECES (1 << 22)

/* ---- spellings -> ids, while reading ------------------------------------- */

typedef struct vocab {
    int cap;            /* room for ids 0 .. cap-1 */
    int n;              /* ids placed */
    const char **text;  /* JSON spelling of each id (NULL if none yet) */
    size_t *len;
    uint16_t *flags;
    int32_t *slot;      /* hash of text -> id; -1 = empty */
    uint64_t mask;
    const char *file;
    q35_error *err;
} vocab;

static int vocab_find(const vocab *v, const char *s, size_t n) {
    for (uint64_t i = q35_hash_bytes(s, n) & v->mask;; i = (i + 1) & v->mask) {
        int id = v->slot[i];
        if (id < 0 || (v->len[id] == n && memcmp(v->text[id], s, n) == 0)) return id;
    }
}

static int vocab_init(vocab *v, int cap, const char *file, q35_error *err) {
    memset(v, 0, sizeof *v);
    v->cap = cap;
    v->file = file;
    v->err = err;
    uint64_t slots = 16;
    while (slots < 2 * (uint64_t)cap) slots *= 2;
    v->mask = slots - 1;
    v->text = calloc((size_t)cap, sizeof *v->text);
    v->len = calloc((size_t)cap, sizeof *v->len);
    v->flags = calloc((size_t)cap, sizeof *v->flags);
    v->slot = malloc((size_t)slots * sizeof *v->slot);
    if (!v->text || !v->len || !v->flags || !v->slot)
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory (%d pieces)", file, cap);
    memset(v->slot, 0xff, (size_t)slots * sizeof *v->slot); /* all -1 */
    return Q35_OK;
}

static void vocab_free(vocab *v) {
    free(v->text);
    free(v->len);
    free(v->flags);
    free(v->slot);
}

/* Gives id the text s: each id and each text once. */
static int vocab_put(vocab *v, int64_t id, const char *s) {
    size_t n = strlen(s);
    if (id < 0 || id >= v->cap)
        return q35_fail(v->err, Q35_ERR_FORMAT,
                        "%s: piece \"%.64s\" has id %lld, outside 0..%d (the entry count - 1)",
                        v->file, s, (long long)id, v->cap - 1);
    if (v->text[id])
        return q35_fail(v->err, Q35_ERR_FORMAT, "%s: id %lld is given to \"%.64s\" and \"%.64s\"",
                        v->file, (long long)id, v->text[id], s);
    int other = vocab_find(v, s, n);
    if (other >= 0)
        return q35_fail(v->err, Q35_ERR_FORMAT, "%s: piece \"%.64s\" has ids %d and %lld",
                        v->file, s, other, (long long)id);
    uint64_t i = q35_hash_bytes(s, n) & v->mask;
    while (v->slot[i] >= 0) i = (i + 1) & v->mask;
    v->slot[i] = (int32_t)id;
    v->text[id] = s;
    v->len[id] = n;
    v->n++;
    return Q35_OK;
}

static int read_vocab(vocab *v, const cJSON *obj) {
    const cJSON *e;
    cJSON_ArrayForEach(e, obj) {
        int64_t id;
        if (q35_hf_json_int(e, INT_MIN, INT_MAX, &id))
            return q35_fail(v->err, Q35_ERR_FORMAT, "%s: vocab piece \"%.64s\": id is not an integer",
                            v->file, e->string);
        int rc = vocab_put(v, id, e->string);
        if (rc) return rc;
        v->flags[id] |= PF_MODEL;
    }
    return Q35_OK;
}

static int member_flag(const cJSON *a, const char *key, int dflt, int *out) {
    const cJSON *m = q35_hf_member(a, key);
    if (q35_hf_absent(m)) *out = dflt;
    else if (cJSON_IsBool(m)) *out = cJSON_IsTrue(m);
    else return -1;
    return 0;
}

/* added_tokens: [{"id", "content", "special", ...}]. */
static int read_added(vocab *v, const cJSON *arr) {
    const cJSON *a;
    int k = 0;
    cJSON_ArrayForEach(a, arr) {
        const cJSON *id = q35_hf_member(a, "id"), *content = q35_hf_member(a, "content");
        int64_t i;
        int special, single, lstrip, rstrip, normalized;
        if (!cJSON_IsObject(a) || q35_hf_json_int(id, INT_MIN, INT_MAX, &i) ||
            !cJSON_IsString(content) || member_flag(a, "special", 0, &special) ||
            member_flag(a, "single_word", 0, &single) || member_flag(a, "lstrip", 0, &lstrip) ||
            member_flag(a, "rstrip", 0, &rstrip) ||
            member_flag(a, "normalized", !special, &normalized))
            return q35_fail(v->err, Q35_ERR_FORMAT,
                            "%s: added token %d is not {\"id\": integer, \"content\": string, "
                            "\"special\": bool, ...}",
                            v->file, k);
        k++;
        if (i < 0 || i >= v->cap || !v->text[i] || strcmp(v->text[i], content->valuestring) != 0) {
            int rc = vocab_put(v, i, content->valuestring);
            if (rc) return rc;
        }
        v->flags[i] |= PF_ADDED | (special ? PF_SPECIAL : 0) | (single ? PF_SINGLE_WORD : 0) |
                       (lstrip ? PF_LSTRIP : 0) | (rstrip ? PF_RSTRIP : 0) |
                       (normalized ? PF_NORMALIZED : 0);
    }
    return Q35_OK;
}

/* One merge as its two halves: "a b" or ["a", "b"]. */
static int merge_halves(const cJSON *m, const char **a, size_t *la, const char **b, size_t *lb) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return -1;
        *a = s, *la = (size_t)(sp - s), *b = sp + 1, *lb = strlen(sp + 1);
        return 0;
    }
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2 || !cJSON_IsString(m->child) ||
        !cJSON_IsString(m->child->next))
        return -1;
    *a = m->child->valuestring, *la = strlen(*a);
    *b = m->child->next->valuestring, *lb = strlen(*b);
    return 0;
}

/* A model-vocabulary id of s[0..n), or -1. */
static int model_id(const vocab *v, const char *s, size_t n) {
    int id = vocab_find(v, s, n);
    return id >= 0 && (v->flags[id] & PF_MODEL) ? id : -1;
}

static int read_merges(const vocab *v, const cJSON *merges, q35_tokenizer *t) {
    if (q35_hf_absent(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges))
        return q35_fail(v->err, Q35_ERR_FORMAT, "%s: model.merges is not an array", v->file);
    if (tok_merges_init(t, merges ? cJSON_GetArraySize(merges) : 0))
        return q35_fail(v->err, Q35_ERR_NOMEM, "%s: out of memory for the merges", v->file);
    char *joined = NULL;
    size_t cap = 0;
    int rank = 0, rc = Q35_OK;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a, *b;
        size_t la, lb;
        if (merge_halves(m, &a, &la, &b, &lb)) {
            rc = q35_fail(v->err, Q35_ERR_FORMAT, "%s: merge %d is neither \"a b\" nor [a, b]",
                          v->file, rank);
            break;
        }
        if (la + lb + 1 > cap) {
            cap = 2 * (la + lb + 1);
            char *grown = realloc(joined, cap);
            if (!grown) {
                rc = q35_fail(v->err, Q35_ERR_NOMEM, "%s: out of memory", v->file);
                break;
            }
            joined = grown;
        }
        memcpy(joined, a, la);
        memcpy(joined + la, b, lb);
        int ia = model_id(v, a, la), ib = model_id(v, b, lb), id = model_id(v, joined, la + lb);
        if (ia < 0 || ib < 0 || id < 0) {
            const char *which = ia < 0 ? a : ib < 0 ? b : joined;
            size_t wn = ia < 0 ? la : ib < 0 ? lb : la + lb;
            rc = q35_fail(v->err, Q35_ERR_FORMAT,
                          "%s: merge %d (\"%.*s\" + \"%.*s\") names \"%.*s\", which is not in the "
                          "vocabulary",
                          v->file, rank, (int)(la < 48 ? la : 48), a, (int)(lb < 48 ? lb : 48), b,
                          (int)(wn < 48 ? wn : 48), which);
            break;
        }
        tok_merge_add(t, ia, ib, id, (uint32_t)rank, 1);
        rank++;
    }
    free(joined);
    return rc;
}

/* ---- pipeline steps ------------------------------------------------------ */

typedef struct steps {
    tok_step *v;
    int n, cap;
} steps;

static tok_step *step_new(steps *s) {
    if (tok_grow(&s->v, &s->cap, s->n, sizeof *s->v, 8)) return NULL;
    tok_step *st = &s->v[s->n++];
    memset(st, 0, sizeof *st);
    return st;
}

static char *dup_str(const char *s, size_t *n) {
    *n = strlen(s);
    char *d = malloc(*n + 1);
    if (d) memcpy(d, s, *n + 1);
    return d;
}

static const char *type_of(const cJSON *node) {
    const cJSON *t = q35_hf_member(node, "type");
    return cJSON_IsString(t) ? t->valuestring : "(untyped)";
}

typedef struct reader {
    const char *file;
    q35_error *err;
} reader;

static int unsupported(const reader *r, const char *what, const cJSON *node) {
    return q35_fail(r->err, Q35_ERR_UNSUPPORTED, "%s: %s %.40s is not supported", r->file, what,
                    type_of(node));
}

static int bad(const reader *r, const char *what, const cJSON *node, const char *why) {
    return q35_fail(r->err, Q35_ERR_FORMAT, "%s: %s %.40s: %s", r->file, what, type_of(node), why);
}

static int nomem(const reader *r) {
    return q35_fail(r->err, Q35_ERR_NOMEM, "%s: out of memory", r->file);
}

/* A {"String": s} or {"Regex": r} pattern into st (s1 or re). */
static int read_pattern(const reader *r, const char *what, const cJSON *node, tok_step *st,
                        int regex_ok) {
    const cJSON *p = q35_hf_member(node, "pattern");
    const cJSON *str = q35_hf_member(p, "String"), *re = q35_hf_member(p, "Regex");
    if (cJSON_IsString(str)) {
        if (!(st->s1 = dup_str(str->valuestring, &st->n1))) return nomem(r);
        return Q35_OK;
    }
    if (!cJSON_IsString(re)) return bad(r, what, node, "pattern is neither {String} nor {Regex}");
    if (!regex_ok)
        return q35_fail(r->err, Q35_ERR_UNSUPPORTED, "%s: %s %s with a Regex pattern is not supported",
                        r->file, what, type_of(node));
    st->re = tok_regex(re->valuestring, strlen(re->valuestring), 0, r->file, r->err);
    if (st->re && !(st->s1 = dup_str(re->valuestring, &st->n1))) return nomem(r);
    return st->re ? Q35_OK : r->err ? r->err->code : Q35_ERR_FORMAT;
}

static int read_string_member(const reader *r, const char *what, const cJSON *node,
                              const char *key, char **out, size_t *n) {
    const cJSON *m = q35_hf_member(node, key);
    if (!cJSON_IsString(m)) {
        char why[64];
        snprintf(why, sizeof why, "\"%s\" is not a string", key);
        return bad(r, what, node, why);
    }
    return (*out = dup_str(m->valuestring, n)) ? Q35_OK : nomem(r);
}

static int read_normalizer(const reader *r, const cJSON *n, steps *s) {
    if (q35_hf_absent(n)) return Q35_OK;
    const char *t = type_of(n);
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = q35_hf_member(n, "normalizers"), *e;
        if (!cJSON_IsArray(list)) return bad(r, "normalizer", n, "no \"normalizers\" list");
        cJSON_ArrayForEach(e, list) {
            int rc = read_normalizer(r, e, s);
            if (rc) return rc;
        }
        return Q35_OK;
    }
    static const struct { const char *name; int kind; } forms[] = {
        {"NFC", N_NFC}, {"NFD", N_NFD}, {"NFKC", N_NFKC}, {"NFKD", N_NFKD}};
    tok_step *st = NULL;
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        if (strcmp(t, forms[i].name) == 0) {
            if (!(st = step_new(s))) return nomem(r);
            st->kind = forms[i].kind;
            return Q35_OK;
        }
    if (strcmp(t, "Replace") == 0) {
        if (!(st = step_new(s))) return nomem(r);
        st->kind = N_REPLACE;
        int rc = read_pattern(r, "normalizer", n, st, 1);
        return rc ? rc : read_string_member(r, "normalizer", n, "content", &st->s2, &st->n2);
    }
    if (strcmp(t, "Prepend") == 0) {
        if (!(st = step_new(s))) return nomem(r);
        st->kind = N_PREPEND;
        return read_string_member(r, "normalizer", n, "prepend", &st->s1, &st->n1);
    }
    if (strcmp(t, "Strip") == 0) {
        if (!(st = step_new(s))) return nomem(r);
        st->kind = N_STRIP;
        if (member_flag(n, "strip_left", 1, &st->a) || member_flag(n, "strip_right", 1, &st->b))
            return bad(r, "normalizer", n, "strip_left / strip_right are not booleans");
        return Q35_OK;
    }
    return unsupported(r, "normalizer", n);
}

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int read_behaviour(const cJSON *node, int *out) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    const cJSON *b = q35_hf_member(node, "behavior");
    for (int i = 0; cJSON_IsString(b) && i < 5; i++)
        if (strcmp(b->valuestring, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

/* Metaspace's prepend_scheme, or the older add_prefix_space. */
static int read_scheme(const cJSON *node, int *out) {
    const cJSON *p = q35_hf_member(node, "prepend_scheme");
    if (cJSON_IsString(p)) {
        if (strcmp(p->valuestring, "always") == 0) *out = PREPEND_ALWAYS;
        else if (strcmp(p->valuestring, "first") == 0) *out = PREPEND_FIRST;
        else if (strcmp(p->valuestring, "never") == 0) *out = PREPEND_NEVER;
        else return -1;
        return 0;
    }
    int add;
    if (member_flag(node, "add_prefix_space", 1, &add)) return -1;
    *out = add ? PREPEND_ALWAYS : PREPEND_NEVER;
    return 0;
}

static int read_pre_tokenizer(const reader *r, const cJSON *p, steps *s) {
    if (q35_hf_absent(p)) return Q35_OK;
    const char *t = type_of(p);
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = q35_hf_member(p, "pretokenizers"), *e;
        if (!cJSON_IsArray(list)) return bad(r, "pre_tokenizer", p, "no \"pretokenizers\" list");
        cJSON_ArrayForEach(e, list) {
            int rc = read_pre_tokenizer(r, e, s);
            if (rc) return rc;
        }
        return Q35_OK;
    }
    tok_step *st = step_new(s);
    if (!st) return nomem(r);
    if (strcmp(t, "Split") == 0) {
        st->kind = P_SPLIT;
        if (read_behaviour(p, &st->a) || member_flag(p, "invert", 0, &st->b))
            return bad(r, "pre_tokenizer", p, "behavior or invert is not one tokenizers knows");
        int rc = read_pattern(r, "pre_tokenizer", p, st, 1);
        if (rc || st->re) return rc;
        /* a String pattern is matched literally */
        size_t n = st->n1;
        char *q = malloc(2 * n + 8);
        if (!q) return nomem(r);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (strchr("\\^$.|?*+()[]{}", st->s1[i])) q[k++] = '\\';
            q[k++] = st->s1[i];
        }
        st->re = tok_regex(q, k, 0, r->file, r->err);
        free(q);
        return st->re ? Q35_OK : r->err ? r->err->code : Q35_ERR_FORMAT;
    }
    if (strcmp(t, "ByteLevel") == 0) {
        st->kind = P_BYTELEVEL;
        if (member_flag(p, "add_prefix_space", 1, &st->a) || member_flag(p, "use_regex", 1, &st->b))
            return bad(r, "pre_tokenizer", p, "add_prefix_space / use_regex are not booleans");
        if (st->b && !(st->re = tok_regex(GPT2_REGEX, sizeof GPT2_REGEX - 1, 0, r->file, r->err)))
            return r->err ? r->err->code : Q35_ERR_FORMAT;
        return Q35_OK;
    }
    if (strcmp(t, "Metaspace") == 0) {
        st->kind = P_METASPACE;
        if (read_scheme(p, &st->a) || member_flag(p, "split", 1, &st->b))
            return bad(r, "pre_tokenizer", p, "prepend_scheme or split is not one tokenizers knows");
        return read_string_member(r, "pre_tokenizer", p, "replacement", &st->s1, &st->n1);
    }
    if (strcmp(t, "Digits") == 0) {
        st->kind = P_DIGITS;
        if (member_flag(p, "individual_digits", 0, &st->a))
            return bad(r, "pre_tokenizer", p, "individual_digits is not a boolean");
        return Q35_OK;
    }
    if (strcmp(t, "WhitespaceSplit") == 0) {
        st->kind = P_WHITESPACE_SPLIT;
        return Q35_OK;
    }
    if (strcmp(t, "Whitespace") == 0) {
        static const char re[] = "\\w+|[^\\w\\s]+";
        st->kind = P_WHITESPACE;
        st->re = tok_regex(re, sizeof re - 1, 0, r->file, r->err);
        return st->re ? Q35_OK : r->err ? r->err->code : Q35_ERR_FORMAT;
    }
    s->n--;
    return unsupported(r, "pre_tokenizer", p);
}

static int read_decoder(const reader *r, const cJSON *d, steps *s) {
    if (q35_hf_absent(d)) return Q35_OK;
    const char *t = type_of(d);
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = q35_hf_member(d, "decoders"), *e;
        if (!cJSON_IsArray(list)) return bad(r, "decoder", d, "no \"decoders\" list");
        cJSON_ArrayForEach(e, list) {
            int rc = read_decoder(r, e, s);
            if (rc) return rc;
        }
        return Q35_OK;
    }
    tok_step *st = step_new(s);
    if (!st) return nomem(r);
    if (strcmp(t, "ByteLevel") == 0) st->kind = D_BYTELEVEL;
    else if (strcmp(t, "ByteFallback") == 0) st->kind = D_BYTEFALLBACK;
    else if (strcmp(t, "Fuse") == 0) st->kind = D_FUSE;
    else if (strcmp(t, "Replace") == 0) {
        st->kind = D_REPLACE;
        int rc = read_pattern(r, "decoder", d, st, 0);
        return rc ? rc : read_string_member(r, "decoder", d, "content", &st->s2, &st->n2);
    } else if (strcmp(t, "Strip") == 0) {
        int64_t a, b;
        st->kind = D_STRIP;
        if (q35_hf_json_int(q35_hf_member(d, "start"), 0, 1 << 20, &a) ||
            q35_hf_json_int(q35_hf_member(d, "stop"), 0, 1 << 20, &b))
            return bad(r, "decoder", d, "start / stop are not counts");
        st->a = (int)a;
        st->b = (int)b;
        return read_string_member(r, "decoder", d, "content", &st->s1, &st->n1);
    } else if (strcmp(t, "Metaspace") == 0) {
        st->kind = D_METASPACE;
        if (read_scheme(d, &st->a))
            return bad(r, "decoder", d, "prepend_scheme is not one tokenizers knows");
        return read_string_member(r, "decoder", d, "replacement", &st->s1, &st->n1);
    } else {
        s->n--;
        return unsupported(r, "decoder", d);
    }
    return Q35_OK;
}

/* ---- the post-processor -------------------------------------------------- */

typedef struct idlist {
    int *v;
    int n, cap;
} idlist;

static int idlist_push(idlist *l, int id) {
    if (tok_grow(&l->v, &l->cap, l->n, sizeof *l->v, 4)) return -1;
    l->v[l->n++] = id;
    return 0;
}

/* The ids a [token, id] pair (Roberta/BertProcessing's cls and sep) names. */
static int pair_id(const reader *r, const cJSON *p, const char *key, int n, idlist *l) {
    const cJSON *m = q35_hf_member(p, key);
    int64_t id;
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2 ||
        q35_hf_json_int(cJSON_GetArrayItem(m, 1), 0, n - 1, &id))
        return bad(r, "post_processor", p, "cls / sep is not [token, id]");
    return idlist_push(l, (int)id) ? nomem(r) : Q35_OK;
}

static int read_post(const reader *r, const cJSON *p, int n, idlist *pre, idlist *suf) {
    if (q35_hf_absent(p)) return Q35_OK;
    const char *t = type_of(p);
    if (strcmp(t, "ByteLevel") == 0) return Q35_OK; /* offsets only */
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, q35_hf_member(p, "processors")) {
            int rc = read_post(r, e, n, pre, suf);
            if (rc) return rc;
        }
        return Q35_OK;
    }
    if (strcmp(t, "RobertaProcessing") == 0 || strcmp(t, "BertProcessing") == 0) {
        int rc = pair_id(r, p, "cls", n, pre);
        return rc ? rc : pair_id(r, p, "sep", n, suf);
    }
    if (strcmp(t, "TemplateProcessing") != 0) return unsupported(r, "post_processor", p);
    const cJSON *single = q35_hf_member(p, "single"), *specials = q35_hf_member(p, "special_tokens");
    const cJSON *e;
    int seen_text = 0;
    if (!cJSON_IsArray(single)) return bad(r, "post_processor", p, "no \"single\" template");
    cJSON_ArrayForEach(e, single) {
        const cJSON *sp = q35_hf_member(e, "SpecialToken");
        if (cJSON_IsObject(q35_hf_member(e, "Sequence"))) {
            seen_text = 1;
            continue;
        }
        const cJSON *name = q35_hf_member(sp, "id");
        const cJSON *ids = q35_hf_member(q35_hf_member(specials, cJSON_IsString(name) ? name->valuestring : ""), "ids");
        const cJSON *x;
        if (!cJSON_IsArray(ids))
            return bad(r, "post_processor", p, "a SpecialToken of the template has no ids");
        cJSON_ArrayForEach(x, ids) {
            int64_t id;
            if (q35_hf_json_int(x, 0, n - 1, &id))
                return bad(r, "post_processor", p, "a special token's id is not a piece");
            if (idlist_push(seen_text ? suf : pre, (int)id)) return nomem(r);
        }
    }
    return Q35_OK;
}

/* ---- building the tokenizer ---------------------------------------------- */

/* s[0..n) in GPT-2's alphabet as the bytes it stands for, into out (n
 * bytes of room); its length, or -1 if a character is outside it. */
static long to_raw(const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = tok_utf8_next((const uint8_t *)s + i, n - i, &cp);
        int b = l ? tok_cp_to_byte(cp) : -1;
        if (b < 0) return -1;
        out[k++] = (char)b;
        i += l;
    }
    return (long)k;
}

static int check_model(const reader *r, const cJSON *model) {
    const cJSON *type = q35_hf_member(model, "type");
    if (!q35_hf_absent(type) && !cJSON_IsString(type))
        return q35_fail(r->err, Q35_ERR_FORMAT, "%s: model.type is not a string", r->file);
    const char *t = cJSON_IsString(type)          ? type->valuestring
                    : q35_hf_member(model, "merges") ? "BPE"
                                                     : "(none)";
    if (strcmp(t, "BPE") != 0)
        return q35_fail(r->err, Q35_ERR_UNSUPPORTED,
                        "%s: tokenizer model %.32s is not supported (q35 reads BPE)", r->file, t);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = q35_hf_member(model, affixes[i]);
        if (!q35_hf_absent(a) && !q35_hf_is_string(a, ""))
            return q35_fail(r->err, Q35_ERR_UNSUPPORTED, "%s: model.%s is not supported", r->file,
                            affixes[i]);
    }
    const cJSON *dropout = q35_hf_member(model, "dropout");
    if (!q35_hf_absent(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return q35_fail(r->err, Q35_ERR_UNSUPPORTED,
                        "%s: model.dropout is not supported (it makes encoding random)", r->file);
    return Q35_OK;
}

/* A token named by tokenizer_config.json (a string or {"content": s}). */
static const char *config_token(const cJSON *root, const char *key) {
    const cJSON *v = q35_hf_member(root, key);
    if (cJSON_IsObject(v)) v = q35_hf_member(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int special_id(const reader *r, const vocab *v, const cJSON *conf, const char *conf_name,
                      const char *key, const char *const *guesses, int guess, int *out) {
    const char *name = conf ? config_token(conf, key) : NULL;
    *out = -1;
    if (name) {
        *out = vocab_find(v, name, strlen(name));
        if (*out < 0)
            return q35_fail(r->err, Q35_ERR_FORMAT, "%s: %s \"%.64s\" is not a piece of %s",
                            conf_name, key, name, r->file);
        return Q35_OK;
    }
    if (guess >= 0) {
        *out = guess;
        return Q35_OK;
    }
    /* common spellings, among the special added tokens only: an ordinary
     * piece may be spelled "<s>" (Qwen's vocabulary has one) */
    for (int i = 0; guesses[i] && *out < 0; i++) {
        int id = vocab_find(v, guesses[i], strlen(guesses[i]));
        if (id >= 0 && (v->flags[id] & PF_SPECIAL)) *out = id;
    }
    return Q35_OK;
}

static int has_step(const steps *s, int kind) {
    for (int i = 0; i < s->n; i++)
        if (s->v[i].kind == kind) return 1;
    return 0;
}

static int build(const reader *r, const cJSON *root, const cJSON *conf, const char *conf_name,
                 q35_tokenizer **out) {
    const cJSON *model = q35_hf_member(root, "model");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model))
        return q35_fail(r->err, Q35_ERR_FORMAT, "%s: no \"model\" object", r->file);
    int rc = check_model(r, model);
    if (rc) return rc;
    const cJSON *vocab_obj = q35_hf_member(model, "vocab");
    const cJSON *added = q35_hf_member(root, "added_tokens");
    const cJSON *unk_item = q35_hf_member(model, "unk_token");
    int byte_fallback, fuse_unk, ignore_merges;
    if (!cJSON_IsObject(vocab_obj))
        return q35_fail(r->err, Q35_ERR_FORMAT, "%s: model.vocab is not an object", r->file);
    if (!q35_hf_absent(added) && !cJSON_IsArray(added))
        return q35_fail(r->err, Q35_ERR_FORMAT, "%s: added_tokens is not an array", r->file);
    if (!q35_hf_absent(unk_item) && !cJSON_IsString(unk_item))
        return q35_fail(r->err, Q35_ERR_FORMAT, "%s: model.unk_token is not a string", r->file);
    if (member_flag(model, "byte_fallback", 0, &byte_fallback) ||
        member_flag(model, "fuse_unk", 0, &fuse_unk) ||
        member_flag(model, "ignore_merges", 0, &ignore_merges))
        return q35_fail(r->err, Q35_ERR_FORMAT,
                        "%s: model.byte_fallback, fuse_unk or ignore_merges is not a boolean",
                        r->file);
    int64_t cap = (int64_t)cJSON_GetArraySize(vocab_obj) + cJSON_GetArraySize(added);
    if (cap < 1 || cap > MAX_PIECES)
        return q35_fail(r->err, Q35_ERR_FORMAT, "%s: %lld pieces; 1 to %d are supported", r->file,
                        (long long)cap, MAX_PIECES);

    vocab v;
    steps norm = {0}, pre = {0}, dec = {0};
    idlist prefix = {0}, suffix = {0};
    q35_tokenizer *t = NULL;
    char *rawbuf = NULL;
    if ((rc = vocab_init(&v, (int)cap, r->file, r->err)) || (rc = read_vocab(&v, vocab_obj)) ||
        (!q35_hf_absent(added) && (rc = read_added(&v, added))))
        goto done;
    for (int i = 0; i < v.n; i++)
        if (!v.text[i]) {
            rc = q35_fail(r->err, Q35_ERR_FORMAT,
                          "%s: no piece has id %d (ids must run 0..%d without gaps)", r->file, i,
                          v.n - 1);
            goto done;
        }
    if ((rc = read_normalizer(r, q35_hf_member(root, "normalizer"), &norm)) ||
        (rc = read_pre_tokenizer(r, q35_hf_member(root, "pre_tokenizer"), &pre)) ||
        (rc = read_decoder(r, q35_hf_member(root, "decoder"), &dec)))
        goto done;
    for (int i = 0; i + 1 < pre.n; i++)
        if (pre.v[i].kind == P_BYTELEVEL) {
            rc = q35_fail(r->err, Q35_ERR_UNSUPPORTED,
                          "%s: a pre_tokenizer after ByteLevel is not supported", r->file);
            goto done;
        }
    int byte_level = has_step(&pre, P_BYTELEVEL);

    uint64_t total = 0;
    size_t longest = 0;
    for (int i = 0; i < v.n; i++) {
        total += v.len[i] + 1;
        longest = v.len[i] > longest ? v.len[i] : longest;
    }
    t = tok_alloc(v.n, total);
    rawbuf = malloc(longest + 1);
    if (!t || !rawbuf) {
        rc = nomem(r);
        goto done;
    }
    t->model = TOK_BPE;
    t->byte_level = byte_level;
    t->byte_fallback = byte_fallback;
    t->fuse_unk = fuse_unk;
    t->ignore_merges = ignore_merges;
    t->use_template = 1;
    snprintf(t->gguf_model, sizeof t->gguf_model, byte_level ? "gpt2" : "llama");
    const char *unk = cJSON_IsString(unk_item) ? unk_item->valuestring : NULL;
    uint64_t at = 0;
    for (int i = 0; i < v.n; i++) {
        uint16_t f = v.flags[i];
        long k = byte_level && (f & PF_MODEL) ? to_raw(v.text[i], v.len[i], rawbuf) : -1;
        if (k >= 0) tok_set_piece(t, i, rawbuf, (uint32_t)k, &at), f |= PF_RAW;
        else tok_set_piece(t, i, v.text[i], (uint32_t)v.len[i], &at);
        if ((f & PF_MODEL) && (!byte_level || (f & PF_RAW))) f |= PF_INDEXED;
        t->flags[i] = f;
        int b = (f & PF_MODEL) ? tok_byte_piece(v.text[i], v.len[i]) : -1;
        if (f & PF_SPECIAL) t->type[i] = Q35_PIECE_CONTROL;
        else if (f & PF_ADDED) t->type[i] = Q35_PIECE_USER_DEFINED;
        else if (byte_fallback && b >= 0) t->type[i] = Q35_PIECE_BYTE;
        else t->type[i] = Q35_PIECE_NORMAL;
        if (b >= 0 && t->byte_id[b] < 0) t->byte_id[b] = i;
        if ((f & PF_RAW) && k == 1 && t->raw_byte_id[(uint8_t)rawbuf[0]] < 0)
            t->raw_byte_id[(uint8_t)rawbuf[0]] = i;
    }
    if (unk) {
        t->bpe_unk = model_id(&v, unk, strlen(unk));
        if (t->bpe_unk < 0) {
            rc = q35_fail(r->err, Q35_ERR_FORMAT, "%s: unk_token \"%.64s\" is not in model.vocab",
                          r->file, unk);
            goto done;
        }
        t->unk = t->bpe_unk;
        t->type[t->unk] = Q35_PIECE_UNKNOWN;
    }
    if ((rc = read_merges(&v, q35_hf_member(model, "merges"), t)) ||
        (rc = read_post(r, q35_hf_member(root, "post_processor"), v.n, &prefix, &suffix)))
        goto done;
    static const char *const bos_names[] = {"<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>", NULL};
    static const char *const eos_names[] = {"</s>", "<eos>", "<|endoftext|>", "<|end_of_text|>", NULL};
    if ((rc = special_id(r, &v, conf, conf_name, "bos_token", bos_names,
                         prefix.n ? prefix.v[0] : -1, &t->bos)) ||
        (rc = special_id(r, &v, conf, conf_name, "eos_token", eos_names, -1, &t->eos)))
        goto done;
    t->prefix = prefix.v, t->n_prefix = prefix.n;
    t->suffix = suffix.v, t->n_suffix = suffix.n;
    prefix.v = suffix.v = NULL;
    t->norm = norm.v, t->n_norm = norm.n;
    t->pre = pre.v, t->n_pre = pre.n;
    t->dec = dec.v, t->n_dec = dec.n;
    norm.v = pre.v = dec.v = NULL;
    norm.n = pre.n = dec.n = 0;
    /* informational: the SentencePiece options this pipeline amounts to */
    for (int i = 0; i < t->n_norm; i++)
        if (t->norm[i].kind == N_PREPEND) t->opts.add_dummy_prefix = 1;
    for (int i = 0; i < t->n_pre; i++)
        if (t->pre[i].kind == P_METASPACE && t->pre[i].a != PREPEND_NEVER) t->opts.add_dummy_prefix = 1;
    if (!(rc = tok_index(t, PF_INDEXED)) && (rc = tok_build_added(t, r->file, r->err)) == Q35_ERR_FORMAT)
        goto done; /* the message names the file */
    if (rc || tok_finish_specials(t, 1)) {
        rc = nomem(r);
        goto done;
    }
    *out = t;
    t = NULL;
done:
    free(rawbuf);
    tok_free(t);
    tok_steps_free(norm.v, norm.n);
    tok_steps_free(pre.v, pre.n);
    tok_steps_free(dec.v, dec.n);
    free(prefix.v);
    free(suffix.v);
    vocab_free(&v);
    return rc;
}

int q35_tokenizer_from_json(q35_tokenizer **out, const char *json, size_t len, const char *name,
                            const char *config, size_t config_len, const char *config_name,
                            q35_error *err) {
    *out = NULL;
    reader r = {name ? name : "tokenizer.json", err};
    cJSON *root = q35_hf_json_parse(json, len, r.file, err), *conf = NULL;
    if (!root) return err ? err->code : Q35_ERR_FORMAT;
    int rc = Q35_OK;
    if (config) {
        conf = q35_hf_json_parse(config, config_len, config_name, err);
        if (!conf) rc = err ? err->code : Q35_ERR_FORMAT;
        else if (!cJSON_IsObject(conf))
            rc = q35_fail(err, Q35_ERR_FORMAT, "%s: not a JSON object", config_name);
    }
    if (!rc) rc = build(&r, root, conf, config_name, out);
    cJSON_Delete(conf);
    cJSON_Delete(root);
    return rc;
}

/* path names tokenizer.json; tokenizer_config.json beside it is read if it
 * exists. */
static int load_json(q35_tokenizer **out, const char *path, q35_error *err) {
    char conf_path[4096];
    const char *slash = strrchr(path, '/');
    int dir = slash ? (int)(slash - path + 1) : 0;
    int k = snprintf(conf_path, sizeof conf_path, "%.*stokenizer_config.json", dir, path);
    if (k < 0 || (size_t)k >= sizeof conf_path)
        return q35_fail(err, Q35_ERR_ARG, "%.200s...: path too long", path);
    char *text = NULL, *conf = NULL;
    size_t len = 0, conf_len = 0;
    struct stat st;
    int rc = q35_read_file(path, &text, &len, err);
    if (!rc && stat(conf_path, &st) == 0) rc = q35_read_file(conf_path, &conf, &conf_len, err);
    if (!rc) rc = q35_tokenizer_from_json(out, text, len, path, conf, conf_len, conf_path, err);
    free(text);
    free(conf);
    return rc;
}

int q35_tokenizer_load_hf(q35_tokenizer **out, const char *dir, q35_error *err) {
    char path[4096];
    *out = NULL;
    int k = snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (k < 0 || (size_t)k >= sizeof path)
        return q35_fail(err, Q35_ERR_ARG, "%.200s...: path too long", dir);
    struct stat st;
    if (stat(path, &st) != 0)
        return q35_fail(err, Q35_ERR_IO, "%s: holds no tokenizer.json", dir);
    return load_json(out, path, err);
}

int q35_tokenizer_load_json(q35_tokenizer **out, const char *path, q35_error *err) {
    *out = NULL;
    return load_json(out, path, err);
}
