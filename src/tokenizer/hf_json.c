/* hf_tokenizer.c — tokenizer.json (see hf.h): q35_hf_tokenizer_parse for
 * the fuzzer, and q35_hf_tokenizer_from_json (hf_internal.h) for the
 * loader (hf.c), which adds the special tokens tokenizer_config.json
 * names. Builds a q35 tokenizer from SentencePiece-style BPE only. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "io/hf.h"
#include "io/hf_internal.h"
#include "tokenizer/tokenizer.h"

/* ---- tokenizer.json ------------------------------------------------------
 *
 * Only SentencePiece-style BPE is read: model.type "BPE" over pieces that
 * spell spaces as U+2581 (stored as ' ', q35's convention), the space
 * mapping coming from a Replace " " -> "▁" normalizer or a Metaspace
 * pre-tokenizer. A Prepend "▁" normalizer or a Metaspace prepend_scheme
 * other than "never" sets add_dummy_prefix. Any other normalizer or
 * pre-tokenizer, and ByteLevel (GPT-2 style) anywhere, is
 * Q35_ERR_UNSUPPORTED: encoding without it would silently differ.
 *
 * Ids: model.vocab and added_tokens together must use each id 0..n-1
 * exactly once (an added token may repeat its vocab entry, same text).
 *
 * Scores: q35 (like sentencepiece) merges the adjacent pair whose
 * concatenation has the highest score; Hugging Face merges the pair with
 * the lowest merge rank. A piece's score is -(rank of the first merge
 * producing it); pieces no merge produces get -(number of merges), below
 * all of those (single characters, whose score never matters, and special
 * tokens). For SentencePiece-converted vocabularies, whose merges list
 * every split of each piece in score order, both rules pick the same
 * pairs; when two candidates make the same piece q35 takes the leftmost.
 *
 * Kinds: special added tokens are CONTROL (UNKNOWN for model.unk_token or
 * "<unk>"), other added tokens USER_DEFINED (matched whole in text), and
 * with model.byte_fallback pieces "<0xNN>" are BYTE; without it they stay
 * NORMAL so that q35 does not fall back to bytes either. Special tokens are
 * never produced from text (q35's rule). bos / eos: "<s>" / "</s>", or the
 * names tokenizer_config.json gives. */

#define MAX_PIECES (1 << 22)

typedef struct vocab {
    int cap;            /* room for ids 0 .. cap-1 */
    int n;              /* ids placed */
    const char **text;  /* JSON spelling of each id (NULL if none yet) */
    size_t *len;
    int32_t *type;      /* 0 until known */
    float *score;
    int32_t *slot;      /* hash of text -> id; -1 = empty */
    uint64_t mask;
    const char *file;
    q35_error *err;
} vocab;

/* The id spelled s[0..n), or -1. */
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
    v->type = calloc((size_t)cap, sizeof *v->type);
    v->score = calloc((size_t)cap, sizeof *v->score);
    v->slot = malloc((size_t)slots * sizeof *v->slot);
    if (!v->text || !v->len || !v->type || !v->score || !v->slot)
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory (%d pieces)", file, cap);
    memset(v->slot, 0xff, (size_t)slots * sizeof *v->slot); /* all -1 */
    return Q35_OK;
}

static void vocab_free(vocab *v) {
    free(v->text);
    free(v->len);
    free(v->type);
    free(v->score);
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
    }
    return Q35_OK;
}

static int is_unk_name(const char *s, const char *unk) {
    return strcmp(s, "<unk>") == 0 || (unk && strcmp(s, unk) == 0);
}

/* added_tokens: [{"id", "content", "special", ...}]. */
static int read_added(vocab *v, const cJSON *arr, const char *unk) {
    if (q35_hf_absent(arr)) return Q35_OK;
    const cJSON *a;
    int k = 0;
    cJSON_ArrayForEach(a, arr) {
        const cJSON *id = q35_hf_member(a, "id"), *content = q35_hf_member(a, "content");
        const cJSON *special = q35_hf_member(a, "special");
        int64_t i;
        if (!cJSON_IsObject(a) || q35_hf_json_int(id, INT_MIN, INT_MAX, &i) ||
            !cJSON_IsString(content) || !(q35_hf_absent(special) || cJSON_IsBool(special)))
            return q35_fail(v->err, Q35_ERR_FORMAT,
                            "%s: added token %d is not {\"id\": integer, \"content\": string, "
                            "\"special\": bool}",
                            v->file, k);
        k++;
        if (i < 0 || i >= v->cap || !v->text[i] || strcmp(v->text[i], content->valuestring) != 0) {
            int rc = vocab_put(v, i, content->valuestring);
            if (rc) return rc;
        }
        if (!cJSON_IsTrue(special)) v->type[i] = Q35_PIECE_USER_DEFINED;
        else if (is_unk_name(content->valuestring, unk)) v->type[i] = Q35_PIECE_UNKNOWN;
        else v->type[i] = Q35_PIECE_CONTROL;
    }
    return Q35_OK;
}

/* The byte NN if s is "<0xNN>" (uppercase hex), else -1. */
static int byte_piece(const char *s) {
    int v = 0;
    if (strlen(s) != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    for (int i = 3; i < 5; i++) {
        if (s[i] >= '0' && s[i] <= '9') v = v * 16 + (s[i] - '0');
        else if (s[i] >= 'A' && s[i] <= 'F') v = v * 16 + (s[i] - 'A' + 10);
        else return -1;
    }
    return v;
}

/* Every id 0..n-1 used; kinds of the pieces added_tokens did not name. */
static int finish_ids(vocab *v, int byte_fallback, const char *unk) {
    for (int i = 0; i < v->n; i++)
        if (!v->text[i])
            return q35_fail(v->err, Q35_ERR_FORMAT,
                            "%s: no piece has id %d (ids must run 0..%d without gaps)", v->file,
                            i, v->n - 1);
    for (int i = 0; i < v->n; i++)
        if (!v->type[i])
            v->type[i] = byte_fallback && byte_piece(v->text[i]) >= 0 ? Q35_PIECE_BYTE
                                                                      : Q35_PIECE_NORMAL;
    if (unk) {
        int id = vocab_find(v, unk, strlen(unk));
        if (id < 0)
            return q35_fail(v->err, Q35_ERR_FORMAT, "%s: unk_token \"%.64s\" is not a piece",
                            v->file, unk);
        v->type[id] = Q35_PIECE_UNKNOWN;
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

/* Scores from the merge ranks (see above). */
static int read_merges(vocab *v, const cJSON *merges) {
    if (!cJSON_IsArray(merges))
        return q35_fail(v->err, Q35_ERR_FORMAT, "%s: model.merges is not an array", v->file);
    const float floor_score = -(float)cJSON_GetArraySize(merges);
    for (int i = 0; i < v->n; i++) v->score[i] = floor_score;
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
        int id = vocab_find(v, joined, la + lb);
        if (vocab_find(v, a, la) < 0 || vocab_find(v, b, lb) < 0 || id < 0) {
            rc = q35_fail(v->err, Q35_ERR_FORMAT,
                          "%s: merge %d (\"%.*s\" + \"%.*s\") uses or makes a piece not in the "
                          "vocabulary",
                          v->file, rank, (int)(la < 64 ? la : 64), a, (int)(lb < 64 ? lb : 64), b);
            break;
        }
        if (-(float)rank > v->score[id]) v->score[id] = -(float)rank;
        rank++;
    }
    free(joined);
    return rc;
}

/* model.type "BPE" without options that change how it encodes. */
static int check_model(const cJSON *model, const char *file, q35_error *err) {
    const cJSON *type = q35_hf_member(model, "type");
    if (!q35_hf_absent(type) && !cJSON_IsString(type))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: model.type is not a string", file);
    const char *t = cJSON_IsString(type) ? type->valuestring
                    : q35_hf_member(model, "merges")  ? "BPE"
                                               : "(none)";
    if (strcmp(t, "BPE") != 0)
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: tokenizer model %.32s is not supported (q35 reads BPE)", file, t);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = q35_hf_member(model, affixes[i]);
        if (!q35_hf_absent(a) && !q35_hf_is_string(a, ""))
            return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: model.%s is not supported", file,
                            affixes[i]);
    }
    if (cJSON_IsTrue(q35_hf_member(model, "ignore_merges")))
        return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: model.ignore_merges is not supported", file);
    return Q35_OK;
}

/* What the normalizer and pre-tokenizer amount to. */
typedef struct text_rules {
    int prefix; /* a "▁" is put before the text */
    int spaces; /* ' ' becomes "▁" */
} text_rules;

static const char LOWER_EIGHTH[] = "\xe2\x96\x81"; /* U+2581 */

static const char *type_of(const cJSON *node) {
    const cJSON *t = q35_hf_member(node, "type");
    return cJSON_IsString(t) ? t->valuestring : "(untyped)";
}

static int unsupported_step(const char *what, const cJSON *node, const char *file,
                            q35_error *err) {
    const char *t = type_of(node);
    if (strcmp(t, "ByteLevel") == 0)
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: byte-level BPE (GPT-2 style %s) is not supported", file, what);
    return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: %s %.32s is not supported", file, what, t);
}

static int read_normalizer(const cJSON *n, text_rules *r, const char *file, q35_error *err) {
    if (q35_hf_absent(n)) return Q35_OK;
    const char *t = type_of(n);
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = q35_hf_member(n, "normalizers"), *e;
        if (!cJSON_IsArray(list))
            return q35_fail(err, Q35_ERR_FORMAT, "%s: normalizer Sequence without a list", file);
        cJSON_ArrayForEach(e, list) {
            int rc = read_normalizer(e, r, file, err);
            if (rc) return rc;
        }
        return Q35_OK;
    }
    if (strcmp(t, "Prepend") == 0 && q35_hf_is_string(q35_hf_member(n, "prepend"), LOWER_EIGHTH)) {
        r->prefix = 1;
        return Q35_OK;
    }
    if (strcmp(t, "Replace") == 0 &&
        q35_hf_is_string(q35_hf_member(q35_hf_member(n, "pattern"), "String"), " ") &&
        q35_hf_is_string(q35_hf_member(n, "content"), LOWER_EIGHTH)) {
        r->spaces = 1;
        return Q35_OK;
    }
    return unsupported_step("normalizer", n, file, err);
}

static int read_pre_tokenizer(const cJSON *p, text_rules *r, const char *file, q35_error *err) {
    if (q35_hf_absent(p)) return Q35_OK;
    const char *t = type_of(p);
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = q35_hf_member(p, "pretokenizers"), *e;
        if (!cJSON_IsArray(list))
            return q35_fail(err, Q35_ERR_FORMAT, "%s: pre_tokenizer Sequence without a list", file);
        cJSON_ArrayForEach(e, list) {
            int rc = read_pre_tokenizer(e, r, file, err);
            if (rc) return rc;
        }
        return Q35_OK;
    }
    if (strcmp(t, "Metaspace") != 0 ||
        !q35_hf_is_string(q35_hf_member(p, "replacement"), LOWER_EIGHTH))
        return unsupported_step("pre_tokenizer", p, file, err);
    /* splitting on "▁" changes nothing when no piece holds an inner "▁" */
    const cJSON *scheme = q35_hf_member(p, "prepend_scheme");
    const cJSON *add = q35_hf_member(p, "add_prefix_space");
    if (cJSON_IsString(scheme)) r->prefix |= strcmp(scheme->valuestring, "never") != 0;
    else r->prefix |= !cJSON_IsFalse(add); /* older files; the default is to prepend */
    r->spaces = 1;
    return Q35_OK;
}

/* A ByteLevel decoder means byte-level BPE too. */
static int check_decoder(const cJSON *d, const char *file, q35_error *err) {
    if (q35_hf_absent(d)) return Q35_OK;
    if (strcmp(type_of(d), "ByteLevel") == 0) return unsupported_step("decoder", d, file, err);
    const cJSON *e;
    cJSON_ArrayForEach(e, q35_hf_member(d, "decoders")) {
        int rc = check_decoder(e, file, err);
        if (rc) return rc;
    }
    return Q35_OK;
}

static int read_options(const cJSON *root, q35_tokenizer_opts *o, const char *file,
                        q35_error *err) {
    text_rules r = {0, 0};
    int rc;
    if ((rc = read_normalizer(q35_hf_member(root, "normalizer"), &r, file, err)) ||
        (rc = read_pre_tokenizer(q35_hf_member(root, "pre_tokenizer"), &r, file, err)) ||
        (rc = check_decoder(q35_hf_member(root, "decoder"), file, err)))
        return rc;
    if (!r.spaces)
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: spaces are not mapped to U+2581 (no Replace normalizer or Metaspace "
                        "pre_tokenizer); q35 reads SentencePiece-style vocabularies only",
                        file);
    o->add_dummy_prefix = r.prefix;
    o->remove_extra_whitespaces = 0;
    return Q35_OK;
}

static int special_id(const vocab *v, const char *name, const char *fallback,
                      const q35_hf_special_names *sn) {
    if (!name) return vocab_find(v, fallback, strlen(fallback));
    int id = vocab_find(v, name, strlen(name));
    if (id < 0)
        q35_fail(v->err, Q35_ERR_FORMAT, "%s: special token \"%.64s\" is not a piece of %s",
                 sn->source, name, v->file);
    return id;
}

/* The pieces with ' ' for U+2581, handed to q35_tokenizer_new. */
static int make_tokenizer(const vocab *v, const q35_hf_special_names *sn, int unk,
                          const q35_tokenizer_opts *opts, q35_tokenizer **out) {
    int bos = special_id(v, sn->bos, "<s>", sn), eos = -1;
    if (sn->bos && bos < 0) return Q35_ERR_FORMAT;
    eos = special_id(v, sn->eos, "</s>", sn);
    if (sn->eos && eos < 0) return Q35_ERR_FORMAT;
    size_t total = 0;
    for (int i = 0; i < v->n; i++) total += v->len[i] + 1;
    char *bytes = malloc(total);
    const char **pieces = malloc((size_t)v->n * sizeof *pieces);
    uint32_t *lens = malloc((size_t)v->n * sizeof *lens);
    int rc = Q35_ERR_NOMEM;
    if (bytes && pieces && lens) {
        char *at = bytes;
        for (int i = 0; i < v->n; i++) {
            const char *s = v->text[i];
            pieces[i] = at;
            for (size_t k = 0; k < v->len[i]; k++) {
                int space = strncmp(s + k, LOWER_EIGHTH, 3) == 0;
                *at++ = space ? ' ' : s[k];
                k += space ? 2 : 0;
            }
            lens[i] = (uint32_t)(at - pieces[i]);
            *at++ = '\0';
        }
        rc = q35_tokenizer_new(out, v->n, pieces, lens, v->score, v->type, bos, eos, unk, opts,
                               v->err);
        if (rc && v->err) {
            char msg[sizeof v->err->msg];
            memcpy(msg, v->err->msg, sizeof msg);
            q35_fail(v->err, rc, "%s: %s", v->file, msg);
        }
    } else {
        q35_fail(v->err, rc, "%s: out of memory", v->file);
    }
    free(bytes);
    free(pieces);
    free(lens);
    return rc;
}

static int build_tokenizer(const cJSON *root, const char *file, const q35_hf_special_names *sn,
                           q35_tokenizer **out, q35_error *err) {
    const cJSON *model = q35_hf_member(root, "model");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: no \"model\" object", file);
    q35_tokenizer_opts opts = {0, 0};
    int rc, byte_fallback = 0;
    if ((rc = check_model(model, file, err)) || (rc = read_options(root, &opts, file, err)) ||
        (rc = q35_hf_member_bool(model, "byte_fallback", 0, &byte_fallback, file, err)))
        return rc;
    const cJSON *vocab_obj = q35_hf_member(model, "vocab");
    const cJSON *added = q35_hf_member(root, "added_tokens");
    const cJSON *unk_item = q35_hf_member(model, "unk_token");
    if (!cJSON_IsObject(vocab_obj))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: model.vocab is not an object", file);
    if (!q35_hf_absent(added) && !cJSON_IsArray(added))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: added_tokens is not an array", file);
    if (!q35_hf_absent(unk_item) && !cJSON_IsString(unk_item))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: model.unk_token is not a string", file);
    const char *unk = cJSON_IsString(unk_item) ? unk_item->valuestring : NULL;
    int64_t cap = (int64_t)cJSON_GetArraySize(vocab_obj) + cJSON_GetArraySize(added);
    if (cap < 1 || cap > MAX_PIECES)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: %lld pieces; 1 to %d are supported", file,
                        (long long)cap, MAX_PIECES);
    vocab v;
    if (!(rc = vocab_init(&v, (int)cap, file, err)) && !(rc = read_vocab(&v, vocab_obj)) &&
        !(rc = read_added(&v, added, unk)) && !(rc = finish_ids(&v, byte_fallback, unk)) &&
        !(rc = read_merges(&v, q35_hf_member(model, "merges"))))
        rc = make_tokenizer(&v, sn, unk ? vocab_find(&v, unk, strlen(unk)) : -1, &opts, out);
    vocab_free(&v);
    return rc;
}

int q35_hf_tokenizer_from_json(const char *json, size_t len, const char *file,
                               const q35_hf_special_names *sn, q35_tokenizer **out,
                               q35_error *err) {
    *out = NULL;
    cJSON *root = q35_hf_json_parse(json, len, file, err);
    if (!root) return err ? err->code : Q35_ERR_FORMAT;
    int rc = build_tokenizer(root, file, sn, out, err);
    cJSON_Delete(root);
    return rc;
}

int q35_hf_tokenizer_parse(const char *json, size_t len, const char *name,
                           struct q35_tokenizer **out, q35_error *err) {
    q35_hf_special_names sn = {NULL, NULL, name};
    return q35_hf_tokenizer_from_json(json, len, name, &sn, out, err);
}
