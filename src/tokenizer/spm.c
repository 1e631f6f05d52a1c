/* spm.c — SentencePiece BPE encoding and decoding (TOK_SPM).
 *
 * Encoding is the sentencepiece library's, step for step:
 *  1. normalise (identity rules): an invalid UTF-8 byte becomes U+FFFD;
 *     with remove_extra_whitespaces, leading spaces go, runs of spaces fold
 *     into one and trailing spaces go; with add_dummy_prefix a space is put
 *     in front of non-empty text. Only ' ' (0x20) is whitespace. A literal
 *     U+2581 becomes ' ' too: sentencepiece writes spaces as U+2581, so it
 *     cannot tell the two apart, and our pieces store spaces as ' '.
 *  2. split into characters; a user-defined piece found at a position is
 *     taken whole (longest first) and never merged;
 *  3. merge the adjacent pair whose concatenation is a NORMAL, USER_DEFINED
 *     or UNUSED piece with the highest score, leftmost on ties, until none
 *     is left (a heap of candidate pairs, stale ones skipped when popped:
 *     O(n log n));
 *  4. a symbol that is an UNUSED piece is split back into the two symbols it
 *     was merged from (recursively); every symbol then becomes its id, or
 *     with byte fallback (all 256 <0xNN> pieces present) one byte id per
 *     byte, or else the unknown id, a run of unknown symbols giving one.
 *
 * Choices where the library leaves one open:
 *  - Text never produces CONTROL, UNKNOWN or BYTE ids by matching their
 *    strings ("<s>" in text is just characters) unless the caller parses
 *    special tokens (tokenizer.c splits them out first; each stretch of text
 *    between them is then encoded as a text of its own, as llama.cpp does).
 *  - With no unknown piece and no byte fallback, unknown text becomes id 0.
 *  - Decoding an UNKNOWN piece gives " \u2047 " (sentencepiece's default
 *    unk_surface), a CONTROL piece gives "" (its text when asked), a byte
 *    piece its byte; the first piece after BOS, or at the start with the
 *    dummy prefix on, loses a leading space.
 *  - llama2.c .bin files carry no piece types: "<unk>" is UNKNOWN,
 *    "\n<s>\n" and "\n</s>\n" are CONTROL (and BOS/EOS; else ids 1 and 2),
 *    "<0xNN>" (uppercase hex) is BYTE, everything else NORMAL. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/error.h"
#include "core/hash.h"
#include "tokenizer/tok_internal.h"

/* What sentencepiece prints for an unknown piece: " ⁇ " */
static const char UNK_SURFACE[] = " \xe2\x81\x87 ";

static int mergeable(int type) {
    return type == Q35_PIECE_NORMAL || type == Q35_PIECE_USER_DEFINED ||
           type == Q35_PIECE_UNUSED;
}

/* The id of the mergeable piece spelled by s[0..n), or -1. */
static int lookup(const q35_tokenizer *t, const char *s, size_t n) {
    if (n > t->max_merge_len) return -1;
    return tok_lookup(t, s, n);
}

static int piece_is(const q35_tokenizer *t, int id, const char *s) {
    size_t n = strlen(s);
    return t->len[id] == n && memcmp(t->bytes + t->off[id], s, n) == 0;
}

/* ---- building ---------------------------------------------------------- */

static int cmp_desc_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x < y) - (x > y);
}

/* The hash table of the mergeable pieces and the user-defined lengths. */
static int build_index(q35_tokenizer *t) {
    uint64_t n_ud = 0;
    for (int i = 0; i < t->n; i++) {
        if (mergeable(t->type[i])) {
            t->flags[i] |= PF_MODEL;
            if (t->len[i] > t->max_merge_len) t->max_merge_len = t->len[i];
        }
        n_ud += t->type[i] == Q35_PIECE_USER_DEFINED;
    }
    if (tok_index(t, PF_MODEL)) return Q35_ERR_NOMEM;
    t->ud_len = malloc((size_t)(n_ud ? n_ud : 1) * sizeof *t->ud_len);
    if (!t->ud_len) return Q35_ERR_NOMEM;
    for (int id = 0; id < t->n; id++) {
        if (t->type[id] != Q35_PIECE_USER_DEFINED || t->len[id] == 0) continue;
        if (tok_lookup(t, t->bytes + t->off[id], t->len[id]) != id) continue; /* duplicate */
        t->ud_len[t->n_ud_len++] = t->len[id];
        t->ud_first[(uint8_t)t->bytes[t->off[id]]] = 1;
    }
    /* keep each user-defined length once, longest first */
    qsort(t->ud_len, (size_t)t->n_ud_len, sizeof *t->ud_len, cmp_desc_u32);
    int k = 0;
    for (int i = 0; i < t->n_ud_len; i++)
        if (k == 0 || t->ud_len[k - 1] != t->ud_len[i]) t->ud_len[k++] = t->ud_len[i];
    t->n_ud_len = k;
    return Q35_OK;
}

int tok_spm_reindex(q35_tokenizer *t) {
    free(t->slot);
    free(t->ud_len);
    t->slot = NULL;
    t->ud_len = NULL;
    t->n_ud_len = 0;
    t->max_merge_len = 0;
    memset(t->ud_first, 0, sizeof t->ud_first);
    for (int i = 0; i < t->n; i++) t->flags[i] &= (uint16_t)~PF_MODEL;
    return build_index(t);
}

int q35_tokenizer_new(q35_tokenizer **out, int n, const char *const *pieces,
                      const uint32_t *lens, const float *scores,
                      const int32_t *types, int bos, int eos, int unk,
                      const q35_tokenizer_opts *opts, q35_error *err) {
    *out = NULL;
    if (n <= 0 || !pieces || !lens || !scores || !opts)
        return q35_fail(err, Q35_ERR_ARG,
                        "tokenizer: %d pieces or a NULL argument", n);
    if (bos < -1 || bos >= n || eos < -1 || eos >= n || unk < -1 || unk >= n)
        return q35_fail(err, Q35_ERR_ARG,
                        "tokenizer: bos %d, eos %d or unk %d outside [-1, %d)",
                        bos, eos, unk, n);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!pieces[i] && lens[i] > 0)
            return q35_fail(err, Q35_ERR_ARG, "tokenizer: piece %d is NULL", i);
        if (isnan(scores[i]))
            return q35_fail(err, Q35_ERR_ARG,
                            "tokenizer: piece %d has a NaN score", i);
        /* 0 is GGUF's "undefined" type, read as NORMAL */
        if (types && (types[i] < 0 || types[i] > Q35_PIECE_BYTE))
            return q35_fail(err, Q35_ERR_ARG,
                            "tokenizer: piece %d has unknown type %d", i,
                            (int)types[i]);
        if (q35_add_u64(total, (uint64_t)lens[i] + 1, &total))
            return q35_fail(err, Q35_ERR_ARG, "tokenizer: pieces too long");
    }

    q35_tokenizer *t = tok_alloc(n, total);
    if (!t) return q35_fail(err, Q35_ERR_NOMEM, "tokenizer: out of memory (%d pieces)", n);
    t->model = TOK_SPM;
    t->opts = *opts;
    t->add_bos = 1;
    snprintf(t->gguf_model, sizeof t->gguf_model, "llama");
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *s = pieces[i];
        tok_set_piece(t, i, s, lens[i], &at);
        t->score[i] = scores[i];
        if (types) {
            t->type[i] = (uint8_t)(types[i] ? types[i] : Q35_PIECE_NORMAL);
        } else if (piece_is(t, i, "<unk>")) {
            t->type[i] = Q35_PIECE_UNKNOWN;
        } else if (piece_is(t, i, "\n<s>\n") || piece_is(t, i, "\n</s>\n")) {
            t->type[i] = Q35_PIECE_CONTROL;
        } else if (tok_byte_piece(s, lens[i]) >= 0) {
            t->type[i] = Q35_PIECE_BYTE;
        } else {
            t->type[i] = Q35_PIECE_NORMAL;
        }
        if (t->type[i] == Q35_PIECE_CONTROL || t->type[i] == Q35_PIECE_UNKNOWN)
            t->flags[i] |= PF_SPECIAL | PF_ADDED;
    }

    /* byte pieces, special ids */
    int n_bytes = 0;
    for (int i = 0; i < n; i++) {
        if (t->type[i] == Q35_PIECE_UNUSED) t->has_unused = 1;
        if (t->type[i] != Q35_PIECE_BYTE) continue;
        int b = tok_byte_piece(t->bytes + t->off[i], t->len[i]);
        if (b >= 0 && t->byte_id[b] < 0) {
            t->byte_id[b] = i;
            n_bytes++;
        }
    }
    t->byte_fallback = n_bytes == 256;
    if (!types) { /* llama2.c conventions */
        if (bos < 0) bos = tok_find(t, "\n<s>\n");
        if (bos < 0 && n > 1) bos = 1;
        if (eos < 0) eos = tok_find(t, "\n</s>\n");
        if (eos < 0 && n > 2) eos = 2;
    }
    for (int i = 0; i < n && unk < 0; i++)
        if (t->type[i] == Q35_PIECE_UNKNOWN) unk = i;
    t->bos = bos;
    t->eos = eos;
    t->unk = unk;
    t->unk_out = unk >= 0 ? unk : 0;

    if (build_index(t) != Q35_OK || tok_build_added(t, "tokenizer", NULL) != Q35_OK ||
        tok_finish_specials(t, 0) != Q35_OK) {
        q35_tokenizer_free(t);
        return q35_fail(err, Q35_ERR_NOMEM, "tokenizer: out of memory (%d pieces)", n);
    }
    *out = t;
    return Q35_OK;
}

/* ---- normalisation ----------------------------------------------------- */

/* Writes the normalised form of s[0..n) to out (room for 3n + 1 bytes) and
 * returns its length. */
static size_t normalize(const q35_tokenizer_opts *o, const uint8_t *s, size_t n,
                        char *out) {
    int fold = o->remove_extra_whitespaces;
    size_t i = 0, k = 0;
    if (fold)
        while (i < n && s[i] == ' ') i++;
    if (i == n) return 0;
    if (o->add_dummy_prefix) out[k++] = ' ';
    int prev_space = fold; /* drop a space that follows a kept space */
    while (i < n) {
        uint32_t cp;
        size_t len = tok_utf8_next(s + i, n - i, &cp);
        if (s[i] == ' ') {
            if (!prev_space) out[k++] = ' ';
            prev_space = fold;
        } else if (len == 0) { /* invalid byte: U+FFFD, one byte consumed */
            memcpy(out + k, "\xef\xbf\xbd", 3);
            k += 3;
            len = 1;
            prev_space = 0;
        } else if (len == 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            out[k++] = ' '; /* U+2581: a space, but not for folding */
            prev_space = 0;
        } else {
            memcpy(out + k, s + i, len);
            k += len;
            prev_space = 0;
        }
        i += len;
    }
    if (fold)
        while (k > 0 && out[k - 1] == ' ') k--;
    return k;
}

/* ---- BPE --------------------------------------------------------------- */

/* A run of the normalised text that is, so far, one token. */
typedef struct symbol {
    int start, len; /* its bytes; len 0 once merged into its left neighbour */
    int prev, next; /* live neighbours, -1 at either end */
    int node;       /* its node in the merge tree */
    int frozen;     /* a user-defined piece: never merged */
} symbol;

/* How a symbol was made: from two others, or (left = -1) a character. */
typedef struct node {
    int start, len, left, right;
} node;

/* A candidate merge of symbols left and right (adjacent when queued). */
typedef struct pair {
    float score; /* the score of the piece they would make */
    int left, right;
    int len;     /* their total bytes when queued: if it changed, stale */
} pair;

/* Heap order: higher score first, then the leftmost. */
static int pair_before(const pair *a, const pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(pair *h, int *n, pair p) {
    int i = (*n)++;
    while (i > 0 && pair_before(&p, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = p;
}

static pair heap_pop(pair *h, int *n) {
    pair top = h[0], last = h[--*n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && pair_before(&h[c + 1], &h[c])) c++;
        if (!pair_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* The working state of one encode call. */
typedef struct bpe {
    const q35_tokenizer *t;
    const char *text; /* normalised text */
    symbol *sym;
    node *nodes;
    int n_nodes;
    pair *heap;
    int n_heap;
    int *out;         /* ids written so far */
    int n_out;
    int prev_unk;     /* the last id written stands for unknown text */
} bpe;

/* Queues the merge of symbols l and r if they make a mergeable piece. */
static void try_pair(bpe *b, int l, int r) {
    if (l < 0 || r < 0 || b->sym[l].frozen || b->sym[r].frozen) return;
    int len = b->sym[l].len + b->sym[r].len;
    int id = lookup(b->t, b->text + b->sym[l].start, (size_t)len);
    if (id < 0) return;
    pair p = {b->t->score[id], l, r, len};
    heap_push(b->heap, &b->n_heap, p);
}

/* Length of the longest user-defined piece at s (n bytes left), or 0. */
static int match_user_defined(const q35_tokenizer *t, const char *s, size_t n) {
    if (!t->ud_first[(uint8_t)s[0]]) return 0;
    for (int i = 0; i < t->n_ud_len; i++) {
        if (t->ud_len[i] > n) continue;
        int id = lookup(t, s, t->ud_len[i]);
        if (id >= 0 && t->type[id] == Q35_PIECE_USER_DEFINED)
            return (int)t->ud_len[i];
    }
    return 0;
}

/* Writes the ids for bytes [start, start+len) that make piece id (-1 if
 * none). */
static void emit(bpe *b, int id, int start, int len) {
    const q35_tokenizer *t = b->t;
    if (id >= 0) {
        b->out[b->n_out++] = id;
        b->prev_unk = 0;
    } else if (t->byte_fallback) {
        for (int i = 0; i < len; i++)
            b->out[b->n_out++] = t->byte_id[(uint8_t)b->text[start + i]];
        b->prev_unk = 0;
    } else {
        if (!b->prev_unk) b->out[b->n_out++] = t->unk_out;
        b->prev_unk = 1;
    }
}

/* Emits symbol s, splitting an UNUSED piece back into the symbols it was
 * made of (stack has room for every node). */
static void emit_symbol(bpe *b, const symbol *s, int *stack) {
    int top = 0;
    stack[top++] = s->node;
    while (top > 0) {
        const node *nd = &b->nodes[stack[--top]];
        int id = lookup(b->t, b->text + nd->start, (size_t)nd->len);
        if (id >= 0 && b->t->type[id] == Q35_PIECE_UNUSED && nd->left >= 0) {
            stack[top++] = nd->right;
            stack[top++] = nd->left;
        } else {
            emit(b, id, nd->start, nd->len);
        }
    }
}

/* Encodes the n normalised bytes of b->text (n > 0), appending to b->out. */
static int bpe_encode(bpe *b, int n) {
    const q35_tokenizer *t = b->t;
    /* n characters at most: n symbols, 2n nodes, 3n queued pairs */
    b->sym = malloc((size_t)n * sizeof *b->sym);
    b->nodes = malloc(2 * (size_t)n * sizeof *b->nodes);
    b->heap = malloc(3 * (size_t)n * sizeof *b->heap);
    int *stack = malloc(2 * (size_t)n * sizeof *stack);
    if (!b->sym || !b->nodes || !b->heap || !stack) {
        free(stack);
        return Q35_ERR_NOMEM;
    }

    /* characters (or whole user-defined pieces) */
    int n_sym = 0;
    for (int i = 0; i < n;) {
        const char *s = b->text + i;
        int len = t->n_ud_len ? match_user_defined(t, s, (size_t)(n - i)) : 0;
        int frozen = len > 0;
        if (!frozen) {
            uint8_t c = (uint8_t)s[0];
            len = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
            if (len > n - i) len = n - i;
        }
        symbol *sy = &b->sym[n_sym];
        sy->start = i;
        sy->len = len;
        sy->prev = n_sym - 1;
        sy->next = i + len < n ? n_sym + 1 : -1;
        sy->frozen = frozen;
        sy->node = b->n_nodes;
        b->nodes[b->n_nodes++] = (node){i, len, -1, -1};
        n_sym++;
        i += len;
    }
    for (int i = 0; i + 1 < n_sym; i++) try_pair(b, i, i + 1);

    /* merge the best pair until none is left */
    while (b->n_heap > 0) {
        pair p = heap_pop(b->heap, &b->n_heap);
        symbol *l = &b->sym[p.left], *r = &b->sym[p.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != p.len)
            continue; /* stale: one side was merged since */
        b->nodes[b->n_nodes] = (node){l->start, p.len, l->node, r->node};
        l->node = b->n_nodes++;
        l->len = p.len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) b->sym[r->next].prev = p.left;
        try_pair(b, l->prev, p.left);
        try_pair(b, p.left, l->next);
    }

    for (int i = 0; i >= 0; i = b->sym[i].next) {
        const symbol *s = &b->sym[i];
        if (t->has_unused)
            emit_symbol(b, s, stack);
        else
            emit(b, lookup(t, b->text + s->start, (size_t)s->len), s->start,
                 s->len);
    }
    free(stack);
    return Q35_OK;
}

int tok_spm_text(const q35_tokenizer *t, const char *s, size_t len, int **ids, int *n_ids,
                 int *cap) {
    if (len > (size_t)(INT_MAX / 4)) return Q35_ERR_ARG;
    char *norm = malloc(3 * len + 1);
    if (!norm) return Q35_ERR_NOMEM;
    int n = (int)normalize(&t->opts, (const uint8_t *)s, len, norm);
    /* one id per normalised byte at most */
    if ((size_t)*n_ids + (size_t)n + 1 > (size_t)*cap) {
        size_t want = (size_t)*n_ids + (size_t)n + 1;
        if (want > INT_MAX) {
            free(norm);
            return Q35_ERR_ARG;
        }
        int *grown = realloc(*ids, want * sizeof *grown);
        if (!grown) {
            free(norm);
            return Q35_ERR_NOMEM;
        }
        *ids = grown;
        *cap = (int)want;
    }
    bpe b = {0};
    b.t = t;
    b.text = norm;
    b.out = *ids;
    b.n_out = *n_ids;
    int rc = n > 0 ? bpe_encode(&b, n) : Q35_OK;
    *n_ids = b.n_out;
    free(b.sym);
    free(b.nodes);
    free(b.heap);
    free(norm);
    return rc;
}

/* ---- decoding ---------------------------------------------------------- */

size_t tok_spm_piece(const q35_tokenizer *t, int prev, int token, int special, char *buf,
                     size_t cap) {
    const char *s = "";
    size_t n = 0;
    char byte;
    if (token >= 0 && token < t->n) {
        int type = t->type[token];
        const char *piece = t->bytes + t->off[token];
        int b = type == Q35_PIECE_BYTE ? tok_byte_piece(piece, t->len[token]) : -1;
        if (type == Q35_PIECE_CONTROL || (type == Q35_PIECE_UNKNOWN && special)) {
            if (special) s = piece, n = t->len[token];
        } else if (type == Q35_PIECE_UNKNOWN) {
            s = UNK_SURFACE;
            n = sizeof UNK_SURFACE - 1;
        } else if (b >= 0) {
            byte = (char)b;
            s = &byte;
            n = 1;
        } else {
            s = piece;
            n = t->len[token];
            /* the dummy prefix of the first word: after BOS (llama2.c), or at
             * the start of a text that got one (sentencepiece) */
            int first = (t->bos >= 0 && prev == t->bos) || (prev < 0 && t->opts.add_dummy_prefix);
            if (!special && first && n > 0 && s[0] == ' ') {
                s++;
                n--;
            }
        }
    }
    if (cap > 0) {
        size_t k = n < cap - 1 ? n : cap - 1;
        memcpy(buf, s, k);
        buf[k] = '\0';
    }
    return n;
}
