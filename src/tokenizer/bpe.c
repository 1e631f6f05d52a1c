/* bpe.c — BPE by merge ranks, step for step as Hugging Face's tokenizers
 * runs it (models/bpe: BPE::merge_word and Word::merge_all):
 *  1. with ignore_merges, a pre-token that is itself a piece is that piece;
 *  2. the pre-token becomes symbols: each byte (byte-level vocabularies,
 *     stored as raw bytes) or each UTF-8 character found in the vocabulary;
 *     a character that is not falls back to its <0xNN> byte pieces (when
 *     all of them exist and byte_fallback is on), else to the unknown piece
 *     (consecutive ones fused with fuse_unk), else it is dropped;
 *  3. a queue holds every adjacent pair that has a merge, lowest rank
 *     first, leftmost on ties; a popped pair whose symbols changed since is
 *     skipped unless the pair now there merges into the same piece (the
 *     library's own test), else the two become the merged piece and the
 *     pairs with its neighbours are queued.
 * llama.cpp's BPE (llm_tokenizer_bpe_session) orders and merges the same
 * way. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* ---- the merge table ----------------------------------------------------- */

static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

int tok_merges_init(q35_tokenizer *t, int n_merges) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n_merges) cap *= 2;
    t->merges = malloc((size_t)cap * sizeof *t->merges);
    if (!t->merges) return Q35_ERR_NOMEM;
    for (uint64_t i = 0; i < cap; i++) t->merges[i].key = UINT64_MAX;
    t->merge_mask = cap - 1;
    t->n_merges = 0;
    for (int i = 0; i < t->n; i++) t->score[i] = -(float)n_merges;
    return Q35_OK;
}

static const tok_merge *merge_find(const q35_tokenizer *t, int a, int b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint64_t i = mix(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const tok_merge *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
    }
}

void tok_merge_add(q35_tokenizer *t, int a, int b, int id, uint32_t rank, int later_wins) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t i = mix(key) & t->merge_mask;
    while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
    if (t->merges[i].key == key && !later_wins) return;
    if (t->merges[i].key != key) t->n_merges++;
    t->merges[i] = (tok_merge){key, rank, id};
    if (-(float)rank > t->score[id]) t->score[id] = -(float)rank; /* see tok_merges_init */
}

/* ---- one word ------------------------------------------------------------ */

typedef struct sym {
    int32_t c;          /* piece id */
    int32_t prev, next; /* -1 at either end */
    int32_t len;        /* bytes; 0 once merged into the left neighbour */
} sym;

typedef struct qent {
    uint32_t rank;
    int32_t pos, id;
} qent;

static int before(const qent *x, const qent *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void push(qent *h, int *n, qent e) {
    int i = (*n)++;
    while (i > 0 && before(&e, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
}

static qent pop(qent *h, int *n) {
    qent top = h[0], last = h[--*n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && before(&h[c + 1], &h[c])) c++;
        if (!before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static void add_sym(sym *s, int *n, int c, int len) {
    s[*n] = (sym){c, *n - 1, -1, len};
    if (*n > 0) s[*n - 1].next = *n;
    (*n)++;
}

static void queue_pair(const q35_tokenizer *t, const sym *s, int l, qent *h, int *nh) {
    if (l < 0 || s[l].next < 0) return;
    const tok_merge *m = merge_find(t, s[l].c, s[s[l].next].c);
    if (m) push(h, nh, (qent){m->rank, l, m->id});
}

int tok_bpe_word(const q35_tokenizer *t, const char *s, size_t n, int *ids, int *n_ids,
                 tok_scratch *sc) {
    if (n == 0) return Q35_OK;
    if (t->ignore_merges || t->whole_newlines) {
        int whole = t->ignore_merges;
        for (size_t i = 0; !whole && i < n && s[i] == '\n'; i++) whole = i + 1 == n;
        int id = whole ? tok_lookup(t, s, n) : -1;
        if (id >= 0) {
            ids[(*n_ids)++] = id;
            return Q35_OK;
        }
    }
    size_t need = n * sizeof(sym) + 3 * n * sizeof(qent);
    if (need > sc->cap) {
        void *p = realloc(sc->p, need);
        if (!p) return Q35_ERR_NOMEM;
        sc->p = p;
        sc->cap = need;
    }
    sym *v = sc->p;
    qent *h = (qent *)(v + n);
    int ns = 0, nh = 0, unk = -1, unk_len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = 1;
        int id;
        if (t->byte_level) {
            id = t->raw_byte_id[(uint8_t)s[i]];
        } else {
            len = tok_utf8_next((const uint8_t *)s + i, n - i, &cp);
            if (!len) len = 1;
            id = tok_lookup(t, s + i, len);
        }
        if (id >= 0) {
            if (unk >= 0) add_sym(v, &ns, unk, unk_len), unk = -1;
            add_sym(v, &ns, id, (int)len);
        } else {
            int all = t->byte_fallback;
            for (size_t k = 0; all && k < len; k++) all = t->byte_id[(uint8_t)s[i + k]] >= 0;
            if (all) {
                for (size_t k = 0; k < len; k++) add_sym(v, &ns, t->byte_id[(uint8_t)s[i + k]], 1);
            } else if (t->bpe_unk >= 0) {
                if (unk >= 0 && t->fuse_unk) {
                    unk_len += (int)len;
                } else {
                    if (unk >= 0) add_sym(v, &ns, unk, unk_len);
                    unk = t->bpe_unk;
                    unk_len = (int)len;
                }
            } /* else: dropped, as tokenizers drops it */
        }
        i += len;
    }
    if (unk >= 0) add_sym(v, &ns, unk, unk_len);

    for (int i = 0; i + 1 < ns; i++) queue_pair(t, v, i, h, &nh);
    while (nh > 0) {
        qent e = pop(h, &nh);
        sym *l = &v[e.pos];
        if (l->len == 0 || l->next < 0) continue;
        sym *r = &v[l->next];
        const tok_merge *m = merge_find(t, l->c, r->c);
        if (!m || m->id != e.id) continue; /* stale */
        l->c = e.id;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) v[r->next].prev = e.pos;
        queue_pair(t, v, l->prev, h, &nh);
        queue_pair(t, v, e.pos, h, &nh);
    }
    for (int i = 0; i < ns; i++)
        if (v[i].len > 0) ids[(*n_ids)++] = v[i].c;
    return Q35_OK;
}
