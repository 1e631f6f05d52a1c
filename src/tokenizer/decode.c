/* decode.c — ids back to bytes, exactly.
 *
 * SentencePiece tokenizers (TOK_SPM) decode piece by piece (spm.c). BPE
 * tokenizers run their decoder steps as tokenizers runs them over the list
 * of token strings (ByteLevel, Replace, ByteFallback, Fuse, Strip,
 * Metaspace), with one difference: bytes are never replaced. Where the
 * library turns byte tokens or byte-level pieces that do not form valid
 * UTF-8 into U+FFFD, q35 gives the bytes themselves, so that decoding
 * returns the text byte for byte and a stream of tokens can be written out
 * piece by piece (a character split over two tokens comes out whole once
 * both are written). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/tok_internal.h"

/* One string of the list the decoder steps transform. */
typedef struct elem {
    size_t off, len;  /* in the arena */
    int raw;          /* its bytes are final (byte-level, byte fallback) */
    int starts, ends; /* it begins / ends a string tokenizers would hold */
    int first;        /* it is tokenizers' element 0 */
} elem;

typedef struct chain {
    tok_buf arena;
    elem *v;
    int n, cap;
} chain;

static int chain_add(chain *c, const char *s, size_t n, int raw, int starts, int ends, int first) {
    if (tok_grow(&c->v, &c->cap, c->n, sizeof *c->v, 16)) return Q35_ERR_NOMEM;
    size_t off = c->arena.n;
    if (tok_buf_put(&c->arena, s, n)) return Q35_ERR_NOMEM;
    c->v[c->n++] = (elem){off, n, raw, starts, ends, first};
    return Q35_OK;
}

/* Replaces element i's bytes with the n bytes at s (s may not point into
 * the arena). */
static int elem_set(chain *c, int i, const char *s, size_t n) {
    size_t off = c->arena.n;
    if (tok_buf_put(&c->arena, s, n)) return Q35_ERR_NOMEM;
    c->v[i].off = off;
    c->v[i].len = n;
    return Q35_OK;
}

/* ByteLevel: a string all of whose characters are in GPT-2's map becomes
 * the bytes they stand for; others stay as they are. */
static int step_bytelevel(chain *c, int i, tok_buf *tmp) {
    elem *e = &c->v[i];
    if (e->raw) return Q35_OK;
    tmp->n = 0;
    for (size_t k = 0; k < e->len;) {
        uint32_t cp;
        size_t l = tok_utf8_next((const uint8_t *)c->arena.p + e->off + k, e->len - k, &cp);
        int b = l ? tok_cp_to_byte(cp) : -1;
        if (b < 0) return Q35_OK; /* not all in the map: unchanged */
        char ch = (char)b;
        if (tok_buf_put(tmp, &ch, 1)) return Q35_ERR_NOMEM;
        k += l;
    }
    c->v[i].raw = 1;
    return elem_set(c, i, tmp->p, tmp->n);
}

static int step_replace(chain *c, int i, const tok_step *st, tok_buf *tmp) {
    elem *e = &c->v[i];
    if (e->raw || st->n1 == 0) return Q35_OK;
    tmp->n = 0;
    if (tok_replace_literal(st, c->arena.p + e->off, e->len, tmp)) return Q35_ERR_NOMEM;
    return elem_set(c, i, tmp->p, tmp->n);
}

/* Strip: up to start copies of the character at the front, stop at the end. */
static void step_strip(chain *c, int i, const tok_step *st) {
    elem *e = &c->v[i];
    for (int k = 0; e->starts && k < st->a && e->len >= st->n1 &&
                    memcmp(c->arena.p + e->off, st->s1, st->n1) == 0;
         k++)
        e->off += st->n1, e->len -= st->n1;
    for (int k = 0; e->ends && k < st->b && e->len >= st->n1 &&
                    memcmp(c->arena.p + e->off + e->len - st->n1, st->s1, st->n1) == 0;
         k++)
        e->len -= st->n1;
}

/* Metaspace: the replacement character becomes ' ', and goes altogether
 * in element 0 unless the prepend scheme is "never". */
static int step_metaspace(chain *c, int i, const tok_step *st, tok_buf *tmp) {
    elem *e = &c->v[i];
    if (e->raw) return Q35_OK;
    tmp->n = 0;
    const char *s = c->arena.p + e->off;
    int drop = e->first && st->a != PREPEND_NEVER;
    for (size_t k = 0; k < e->len;) {
        if (k + st->n1 <= e->len && memcmp(s + k, st->s1, st->n1) == 0) {
            if (!drop && tok_buf_put(tmp, " ", 1)) return Q35_ERR_NOMEM;
            k += st->n1;
        } else {
            if (tok_buf_put(tmp, s + k, 1)) return Q35_ERR_NOMEM;
            k++;
        }
    }
    return elem_set(c, i, tmp->p, tmp->n);
}

static int step_fuse(chain *c) {
    if (c->n <= 1) return Q35_OK;
    tok_buf all = {0};
    int rc = Q35_OK;
    for (int i = 0; i < c->n && !rc; i++) rc = tok_buf_put(&all, c->arena.p + c->v[i].off, c->v[i].len);
    elem e = {0, 0, 1, c->v[0].starts, c->v[c->n - 1].ends, c->v[0].first};
    for (int i = 0; i < c->n; i++) e.raw &= c->v[i].raw;
    if (!rc) {
        c->n = 1;
        c->v[0] = e;
        rc = elem_set(c, 0, all.p, all.n);
    }
    free(all.p);
    return rc;
}

static int run_chain(const q35_tokenizer *t, chain *c, int streaming) {
    tok_buf tmp = {0};
    int rc = Q35_OK;
    for (int s = 0; s < t->n_dec && !rc; s++) {
        const tok_step *st = &t->dec[s];
        if (st->kind == D_FUSE) {
            rc = step_fuse(c);
            if (streaming && c->n == 1) { /* a piece of the text only */
                c->v[0].starts = c->v[0].first;
                c->v[0].ends = 0;
            }
            continue;
        }
        for (int i = 0; i < c->n && !rc; i++) {
            switch (st->kind) {
            case D_BYTELEVEL: rc = step_bytelevel(c, i, &tmp); break;
            case D_REPLACE: rc = step_replace(c, i, st, &tmp); break;
            case D_BYTEFALLBACK: {
                elem *e = &c->v[i];
                int b = e->raw ? -1 : tok_byte_piece(c->arena.p + e->off, e->len);
                if (b >= 0) {
                    char ch = (char)b;
                    e->raw = 1;
                    rc = elem_set(c, i, &ch, 1);
                }
                break;
            }
            case D_STRIP: step_strip(c, i, st); break;
            case D_METASPACE: rc = step_metaspace(c, i, st, &tmp); break;
            }
        }
    }
    free(tmp.p);
    return rc;
}

/* Adds token id to the chain (nothing for a special token unless
 * rendered). */
static int chain_token(const q35_tokenizer *t, chain *c, int id, int special, int first) {
    if ((t->flags[id] & PF_SPECIAL) && !special) return Q35_OK;
    return chain_add(c, t->bytes + t->off[id], t->len[id], (t->flags[id] & PF_RAW) != 0, 1, 1,
                     first);
}

static int chain_out(chain *c, tok_buf *out) {
    for (int i = 0; i < c->n; i++)
        if (tok_buf_put(out, c->arena.p + c->v[i].off, c->v[i].len)) return Q35_ERR_NOMEM;
    return Q35_OK;
}

size_t q35_tokenizer_decode(const q35_tokenizer *t, int prev, int token, char *buf, size_t cap) {
    if (cap > 0) buf[0] = '\0';
    if (!t || token < 0 || token >= t->n) return 0;
    if (t->model == TOK_SPM) return tok_spm_piece(t, prev, token, 0, buf, cap);
    int at_start = prev < 0 || prev >= t->n || (t->flags[prev] & PF_SPECIAL);
    chain c = {0};
    tok_buf out = {0};
    size_t n = 0;
    if (!chain_token(t, &c, token, 0, at_start) && !run_chain(t, &c, 1) && !chain_out(&c, &out))
        n = out.n;
    if (cap > 0 && n > 0) {
        size_t k = n < cap - 1 ? n : cap - 1;
        memcpy(buf, out.p, k);
        buf[k] = '\0';
    }
    free(out.p);
    free(c.arena.p);
    free(c.v);
    return n;
}

int q35_tokenizer_decode_ids(const q35_tokenizer *t, const int *ids, int n, unsigned flags,
                             char **text, size_t *len, q35_error *err) {
    *text = NULL;
    *len = 0;
    if (!t || n < 0 || (n > 0 && !ids))
        return q35_fail(err, Q35_ERR_ARG, "tokenizer: no tokenizer, or %d ids at NULL", n);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n)
            return q35_fail(err, Q35_ERR_ARG, "tokenizer: id %d (at %d) is not in 0..%d", ids[i],
                            i, t->n - 1);
    int special = (flags & Q35_DECODE_SPECIAL) != 0;
    tok_buf out = {0};
    int rc = tok_buf_put(&out, "", 0);
    if (t->model == TOK_SPM) {
        char small[256];
        for (int i = 0; i < n && !rc; i++) {
            size_t k = tok_spm_piece(t, i ? ids[i - 1] : -1, ids[i], special, small, sizeof small);
            if (k < sizeof small) {
                rc = tok_buf_put(&out, small, k);
            } else {
                char *big = malloc(k + 1);
                rc = big ? tok_buf_put(&out, big, tok_spm_piece(t, i ? ids[i - 1] : -1, ids[i],
                                                                special, big, k + 1))
                         : Q35_ERR_NOMEM;
                free(big);
            }
        }
    } else {
        chain c = {0};
        for (int i = 0; i < n && !rc; i++) rc = chain_token(t, &c, ids[i], special, c.n == 0);
        if (!rc) rc = run_chain(t, &c, 0);
        if (!rc) rc = chain_out(&c, &out);
        free(c.arena.p);
        free(c.v);
    }
    if (rc) {
        free(out.p);
        return q35_fail(err, rc, "tokenizer: out of memory decoding %d ids", n);
    }
    *text = out.p;
    *len = out.n;
    return Q35_OK;
}
