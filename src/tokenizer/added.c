/* added.c — added (special) tokens split out of the text before the model
 * runs, as tokenizers' AddedVocabulary does: a trie over their spellings,
 * searched leftmost-longest (its Aho-Corasick match kind). A special token
 * found while the caller does not parse specials is passed over as text
 * (tokenizers' encode_special_tokens); single_word, lstrip and rstrip
 * behave as the library's. Tokens marked normalized are matched in the
 * normalized text (a second trie, over their normalized spellings). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"
#include "tokenizer/tok_internal.h"

/* ---- the trie ------------------------------------------------------------ */

static int new_node(tok_trie *tr, uint8_t byte) {
    if (tok_grow(&tr->v, &tr->cap, tr->n, sizeof *tr->v, 64)) return -1;
    tr->v[tr->n] = (tok_trie_node){-1, -1, -1, byte};
    return tr->n++;
}

int tok_trie_add(tok_trie *tr, const char *s, size_t n, int id) {
    if (n == 0) return Q35_OK; /* an empty spelling never matches */
    int node = tr->root_child[(uint8_t)s[0]];
    if (node < 0) {
        if ((node = new_node(tr, (uint8_t)s[0])) < 0) return Q35_ERR_NOMEM;
        tr->root_child[(uint8_t)s[0]] = node;
    }
    for (size_t i = 1; i < n; i++) {
        int c = tr->v[node].child;
        while (c >= 0 && tr->v[c].byte != (uint8_t)s[i]) c = tr->v[c].sibling;
        if (c < 0) {
            if ((c = new_node(tr, (uint8_t)s[i])) < 0) return Q35_ERR_NOMEM;
            tr->v[c].sibling = tr->v[node].child;
            tr->v[node].child = c;
        }
        node = c;
    }
    if (tr->v[node].id < 0) tr->v[node].id = id; /* the first spelling stands */
    return Q35_OK;
}

void tok_trie_free(tok_trie *tr) {
    free(tr->v);
    tr->v = NULL;
    tr->n = tr->cap = 0;
}

/* The longest token spelled at s (n bytes left): its id and length. */
static int longest(const tok_trie *tr, const char *s, size_t n, size_t *len) {
    int best = -1;
    int node = tr->root_child[(uint8_t)s[0]];
    for (size_t i = 1; node >= 0; i++) {
        if (tr->v[node].id >= 0) best = tr->v[node].id, *len = i;
        if (i == n) break;
        int c = tr->v[node].child;
        while (c >= 0 && tr->v[c].byte != (uint8_t)s[i]) c = tr->v[c].sibling;
        node = c;
    }
    return best;
}

int tok_build_added(q35_tokenizer *t, const char *file, q35_error *err) {
    tok_buf b = {0};
    int rc = Q35_OK;
    for (int id = 0; id < t->n && !rc; id++) {
        if (!(t->flags[id] & PF_ADDED)) continue;
        const char *s = t->bytes + t->off[id];
        if (t->flags[id] & PF_NORMALIZED) {
            rc = tok_normalize(t, s, t->len[id], &b);
            if (!rc) rc = tok_trie_add(&t->added_norm, b.p, b.n, id);
        } else {
            rc = tok_trie_add(&t->added_raw, s, t->len[id], id);
        }
    }
    free(b.p);
    if (rc == Q35_ERR_FORMAT)
        return q35_fail(err, rc, "%s: the normalizer grows an added token past %d times its length",
                        file, TOK_GROW_FACTOR);
    return rc ? q35_fail(err, rc, "tokenizer: out of memory for the added tokens") : Q35_OK;
}

/* ---- splitting ----------------------------------------------------------- */

static int frags_add(tok_frags *f, size_t off, size_t len, int id, int at_start) {
    if (id < 0 && len == 0) return Q35_OK;
    if (tok_grow(&f->v, &f->cap, f->n, sizeof *f->v, 16)) return Q35_ERR_NOMEM;
    f->v[f->n++] = (tok_frag){off, len, id, at_start};
    return Q35_OK;
}

static int is_white(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* Regex \w: letters, marks, decimal digits, connector punctuation. */
static int is_word(uint32_t c) {
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

/* The character that ends just before s + end (start <= end), or 0. */
static uint32_t char_before(const char *s, size_t start, size_t end, size_t *len) {
    size_t k = end;
    while (k > start && end - k < 4) {
        k--;
        uint32_t cp;
        size_t l = tok_utf8_next((const uint8_t *)s + k, end - k, &cp);
        if (l == end - k) {
            *len = l;
            return cp;
        }
    }
    *len = 0;
    return 0;
}

int tok_split_added(const q35_tokenizer *t, const tok_trie *tr, const char *s, size_t n,
                    size_t base, int at_start, int parse_special, tok_frags *out) {
    size_t run = 0; /* text not yet emitted starts here */
    if (tr->n == 0) return frags_add(out, base, n, -1, at_start);
    for (size_t p = 0; p < n;) {
        size_t len = 0;
        int id = longest(tr, s + p, n - p, &len);
        if (id < 0) {
            p++;
            continue;
        }
        size_t start = p, stop = p + len;
        p = stop; /* the match is consumed, kept or not */
        uint16_t f = t->flags[id];
        if ((f & PF_SPECIAL) && !parse_special) continue;
        uint32_t cp;
        size_t l;
        if (f & PF_SINGLE_WORD) {
            int left_ok = start == 0 || !is_word(char_before(s, 0, start, &l));
            int right_ok = stop == n || !tok_utf8_next((const uint8_t *)s + stop, n - stop, &cp) ||
                           !is_word(cp);
            if (!left_ok || !right_ok) continue;
        }
        if (f & PF_LSTRIP) {
            size_t k = start;
            while (k > run && (cp = char_before(s, run, k, &l), l) && is_white(cp)) k -= l;
            start = k;
        }
        if (f & PF_RSTRIP) {
            while (stop < n && (l = tok_utf8_next((const uint8_t *)s + stop, n - stop, &cp)) &&
                   is_white(cp))
                stop += l;
            p = stop;
        }
        if (frags_add(out, base + run, start - run, -1, at_start && run == 0) ||
            frags_add(out, base + start, stop - start, id, 0))
            return Q35_ERR_NOMEM;
        run = stop;
    }
    return frags_add(out, base + run, n - run, -1, at_start && run == 0);
}
