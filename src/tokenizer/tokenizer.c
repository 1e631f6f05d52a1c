/* tokenizer.c — encoding (the order of the steps), the accessors, freeing,
 * and q35_tokenizer_load, which picks the reader for a path.
 *
 * A BPE tokenizer encodes as tokenizers' Tokenizer::encode does:
 *  1. invalid UTF-8 becomes U+FFFD (one per maximal subpart, as
 *     TextDecoder does: tokenizers itself takes only valid strings);
 *  2. added tokens are split out of the raw text; a special one only with
 *     Q35_TOKENIZE_PARSE_SPECIAL (else it is text);
 *  3. each stretch of text between them is normalized on its own, and the
 *     added tokens marked normalized are split out of the result;
 *  4. each remaining stretch is pre-tokenized, each pre-token run through
 *     BPE;
 *  5. Q35_TOKENIZE_ADD_SPECIAL puts the post-processor's ids around
 *     (tokenizer.json) or BOS/EOS where the file says so (GGUF). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "tokenizer/tok_internal.h"

typedef struct idvec {
    int *v;
    int n, cap;
} idvec;

static int ids_room(idvec *o, size_t more) {
    if ((size_t)o->n + more <= (size_t)o->cap) return Q35_OK;
    size_t cap = o->cap ? (size_t)o->cap : 64;
    while (cap < (size_t)o->n + more) cap *= 2;
    if (cap > INT_MAX) return Q35_ERR_ARG;
    int *v = realloc(o->v, cap * sizeof *v);
    if (!v) return Q35_ERR_NOMEM;
    o->v = v;
    o->cap = (int)cap;
    return Q35_OK;
}

static int ids_push(idvec *o, int id) {
    int rc = ids_room(o, 1);
    if (!rc) o->v[o->n++] = id;
    return rc;
}

static int encode_spm(const q35_tokenizer *t, const char *text, size_t len, int parse, idvec *o) {
    if (!parse || t->added_raw.n == 0) return tok_spm_text(t, text, len, &o->v, &o->n, &o->cap);
    tok_frags f = {0};
    int rc = tok_split_added(t, &t->added_raw, text, len, 0, 1, 1, &f);
    for (int i = 0; i < f.n && !rc; i++)
        rc = f.v[i].id >= 0 ? ids_push(o, f.v[i].id)
                            : tok_spm_text(t, text + f.v[i].off, f.v[i].len, &o->v, &o->n, &o->cap);
    free(f.v);
    return rc;
}

static int encode_wpm(const q35_tokenizer *t, const char *text, size_t len, int parse, idvec *o) {
    tok_frags f = {0};
    int rc = tok_split_added(t, &t->added_raw, text, len, 0, 1, parse, &f);
    for (int i = 0; i < f.n && !rc; i++)
        rc = f.v[i].id >= 0 ? ids_push(o, f.v[i].id)
                            : tok_wpm_text(t, text + f.v[i].off, f.v[i].len, &o->v, &o->n, &o->cap);
    free(f.v);
    return rc;
}

/* The state of one BPE encode call. */
typedef struct bpe_call {
    const q35_tokenizer *t;
    idvec *o;
    tok_scratch sc;
    tok_pre_work pw;
    tok_buf nb; /* a normalized stretch */
} bpe_call;

/* One pre-token through BPE. */
static int word(void *user, const char *s, size_t n) {
    bpe_call *b = user;
    int rc = ids_room(b->o, n + 1);
    return rc ? rc : tok_bpe_word(b->t, s, n, b->o->v, &b->o->n, &b->sc);
}

/* Steps 3 and 4 for one stretch of text s[0..n). */
static int encode_stretch(bpe_call *b, const char *s, size_t n, int at_start, int parse) {
    const q35_tokenizer *t = b->t;
    tok_frags f = {0};
    int rc = tok_normalize(t, s, n, &b->nb);
    if (!rc) rc = tok_split_added(t, &t->added_norm, b->nb.p, b->nb.n, 0, at_start, parse, &f);
    for (int i = 0; i < f.n && !rc; i++)
        rc = f.v[i].id >= 0 ? ids_push(b->o, f.v[i].id)
                            : tok_pretokenize(t, &b->pw, b->nb.p + f.v[i].off, f.v[i].len,
                                              f.v[i].at_start, word, b);
    free(f.v);
    return rc;
}

static int encode_bpe(const q35_tokenizer *t, const char *text, size_t len, int parse, idvec *o) {
    bpe_call b = {.t = t, .o = o};
    tok_buf clean = {0};
    tok_frags f = {0};
    int rc = tok_utf8_sanitize(text, len, &clean);
    if (!rc) rc = tok_split_added(t, &t->added_raw, clean.p, clean.n, 0, 1, parse, &f);
    for (int i = 0; i < f.n && !rc; i++)
        rc = f.v[i].id >= 0 ? ids_push(o, f.v[i].id)
                            : encode_stretch(&b, clean.p + f.v[i].off, f.v[i].len, f.v[i].at_start,
                                             parse);
    free(f.v);
    free(b.sc.p);
    free(b.nb.p);
    tok_pre_work_free(t, &b.pw);
    free(clean.p);
    return rc;
}

int q35_tokenizer_encode(const q35_tokenizer *t, const char *text, size_t len, unsigned flags,
                         int **ids, int *n_ids, q35_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!t) return q35_fail(err, Q35_ERR_ARG, "tokenizer: none given");
    if (!text && len > 0) return q35_fail(err, Q35_ERR_ARG, "tokenizer: text is NULL");
    if (len > (size_t)(INT_MAX / 4))
        return q35_fail(err, Q35_ERR_ARG, "tokenizer: text of %zu bytes is too long to encode",
                        len);
    int add = (flags & Q35_TOKENIZE_ADD_SPECIAL) != 0;
    int parse = (flags & Q35_TOKENIZE_PARSE_SPECIAL) != 0;
    if (add && !t->use_template && t->add_bos && t->bos < 0)
        return q35_fail(err, Q35_ERR_ARG, "tokenizer: BOS asked for but the vocabulary has none");
    if (add && !t->use_template && t->add_eos && t->eos < 0)
        return q35_fail(err, Q35_ERR_ARG, "tokenizer: EOS asked for but the vocabulary has none");
    idvec o = {0};
    int rc = ids_room(&o, 16);
    if (add && !rc) {
        if (t->use_template)
            for (int i = 0; i < t->n_prefix && !rc; i++) rc = ids_push(&o, t->prefix[i]);
        else if (t->add_bos)
            rc = ids_push(&o, t->bos);
    }
    if (!rc && len > 0)
        rc = t->model == TOK_SPM   ? encode_spm(t, text, len, parse, &o)
             : t->model == TOK_WPM ? encode_wpm(t, text, len, parse, &o)
                                   : encode_bpe(t, text, len, parse, &o);
    if (add && !rc) {
        if (t->use_template)
            for (int i = 0; i < t->n_suffix && !rc; i++) rc = ids_push(&o, t->suffix[i]);
        else if (t->add_eos)
            rc = ids_push(&o, t->eos);
    }
    if (rc) {
        free(o.v);
        if (rc == Q35_ERR_FORMAT)
            return q35_fail(err, rc,
                            "tokenizer: its normalizer or pre-tokenizer fails on %zu bytes (text "
                            "grown past %d times its length, or a regex past its match limit)",
                            len, TOK_GROW_FACTOR);
        return q35_fail(err, rc, rc == Q35_ERR_NOMEM
                                     ? "tokenizer: out of memory encoding %zu bytes"
                                     : "tokenizer: %zu bytes give too many tokens",
                        len);
    }
    if (o.n == 0) {
        free(o.v);
        o.v = NULL;
    }
    *ids = o.v;
    *n_ids = o.n;
    return Q35_OK;
}

/* ---- accessors ----------------------------------------------------------- */

int q35_tokenizer_n_vocab(const q35_tokenizer *t) { return t ? t->n : 0; }
int q35_tokenizer_bos(const q35_tokenizer *t) { return t ? t->bos : -1; }
int q35_tokenizer_eos(const q35_tokenizer *t) { return t ? t->eos : -1; }
int q35_tokenizer_eot(const q35_tokenizer *t) { return t ? t->eot : -1; }
int q35_tokenizer_n_eog(const q35_tokenizer *t) { return t ? t->n_eog : 0; }
const int *q35_tokenizer_eog(const q35_tokenizer *t) { return t ? t->eog : NULL; }

int q35_tokenizer_add_bos(const q35_tokenizer *t) {
    if (!t) return 0;
    if (!t->use_template) return t->add_bos;
    return t->n_prefix > 0 && t->prefix[0] == t->bos;
}

int q35_tokenizer_is_eog(const q35_tokenizer *t, int id) {
    if (!t) return 0;
    int lo = 0, hi = t->n_eog - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (t->eog[mid] == id) return 1;
        if (t->eog[mid] < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

const q35_tokenizer_opts *q35_tokenizer_options(const q35_tokenizer *t) { return &t->opts; }

const char *q35_tokenizer_piece(const q35_tokenizer *t, int id, uint32_t *len) {
    if (!t || id < 0 || id >= t->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->len[id];
    return t->bytes + t->off[id];
}

int q35_tokenizer_piece_type(const q35_tokenizer *t, int id) {
    return t && id >= 0 && id < t->n ? t->type[id] : 0;
}

float q35_tokenizer_score(const q35_tokenizer *t, int id) {
    return t && id >= 0 && id < t->n ? t->score[id] : 0.0f;
}

const char *q35_tokenizer_kind(const q35_tokenizer *t) {
    return t->model == TOK_SPM   ? "SentencePiece BPE"
           : t->model == TOK_WPM ? "WordPiece"
           : t->byte_level       ? "byte-level BPE"
                                 : "BPE";
}

void tok_free(q35_tokenizer *t) {
    if (!t) return;
    free(t->bytes);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->flags);
    free(t->prefix);
    free(t->suffix);
    free(t->eog);
    free(t->slot);
    free(t->ud_len);
    free(t->merges);
    tok_steps_free(t->norm, t->n_norm);
    tok_steps_free(t->pre, t->n_pre);
    tok_steps_free(t->dec, t->n_dec);
    tok_trie_free(&t->added_raw);
    tok_trie_free(&t->added_norm);
    free(t);
}

void q35_tokenizer_free(q35_tokenizer *t) { tok_free(t); }

/* ---- q35_tokenizer_load -------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int q35_tokenizer_load(q35_tokenizer **out, const char *path, q35_error *err) {
    *out = NULL;
    if (!path || !*path) return q35_fail(err, Q35_ERR_ARG, "no tokenizer path given");
    struct stat st;
    if (stat(path, &st) != 0)
        return q35_fail(err, Q35_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return q35_tokenizer_load_hf(out, path, err);
    unsigned char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return q35_fail(err, Q35_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
        int rc = q35_tokenizer_load_gguf(out, path, err);
        if (!rc && !*out)
            rc = q35_fail(err, Q35_ERR_FORMAT, "%s: holds no tokenizer (no tokenizer.ggml.model)",
                          path);
        return rc;
    }
    if (ends_with(path, ".json") || (got > 0 && magic[0] == '{'))
        return q35_tokenizer_load_json(out, path, err);
    return q35_tokenizer_load_llama2c(out, path, 0, err);
}
