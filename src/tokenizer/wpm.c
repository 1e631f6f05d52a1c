/* wpm.c — WordPiece (TOK_WPM), as llama.cpp runs BERT vocabularies from
 * GGUF (tokenizer.ggml.model "bert"; llm_tokenizer_wpm_session):
 *  1. the text becomes words: with strip_accents, NFD first and accent
 *     marks dropped; whitespace ends a word; NUL, U+FFFD and control
 *     characters go; punctuation, ASCII symbols and CJK ideographs are
 *     words of their own; with lowercase, characters are lowercased
 *     (Unicode's simple mapping);
 *  2. each word, with "▁" put in front (the converter spells word-initial
 *     pieces so and drops "##" from the others), is split greedily into the
 *     longest pieces from the left; a word that cannot be split entirely
 *     is the unknown token. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

static int is_white(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

static int is_chinese(uint32_t c) { /* llama.cpp's ranges, as tokenizers' */
    return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) ||
           (c >= 0x20000 && c <= 0x2a6df) || (c >= 0x2a700 && c <= 0x2b73f) ||
           (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
           (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

static void put_cp(tok_buf *b, uint32_t cp, int *rc) {
    utf8proc_uint8_t u[4];
    utf8proc_ssize_t n = utf8proc_encode_char((utf8proc_int32_t)cp, u);
    if (!*rc) *rc = tok_buf_put(b, u, (size_t)n);
}

/* Greedy longest-first split of one word (w[0..n), "▁" in front). */
static int word_ids(const q35_tokenizer *t, const char *w, size_t n, int **ids, int *n_ids,
                    int *cap) {
    size_t need = (size_t)*n_ids + n + 1;
    if (need > (size_t)*cap) {
        int *g = realloc(*ids, need * sizeof *g);
        if (!g) return Q35_ERR_NOMEM;
        *ids = g;
        *cap = (int)need;
    }
    int start = *n_ids;
    for (size_t i = 0; i < n;) {
        size_t j = n - i > t->max_piece_len ? i + t->max_piece_len : n;
        int id = -1;
        while (j > i && (id = tok_lookup(t, w + i, j - i)) < 0) j--;
        if (id < 0) { /* the whole word is unknown */
            *n_ids = start;
            break;
        }
        (*ids)[(*n_ids)++] = id;
        i = j;
    }
    if (*n_ids == start && t->unk >= 0) (*ids)[(*n_ids)++] = t->unk;
    return Q35_OK;
}

int tok_wpm_text(const q35_tokenizer *t, const char *s, size_t len, int **ids, int *n_ids,
                 int *cap) {
    tok_buf clean = {0}, word = {0};
    int rc = tok_utf8_sanitize(s, len, &clean);
    utf8proc_uint8_t *nfd = NULL;
    const uint8_t *u = (const uint8_t *)clean.p;
    size_t n = clean.n;
    if (!rc && t->wpm_strip_accents && n > 0) {
        utf8proc_ssize_t m = utf8proc_map(u, (utf8proc_ssize_t)n, &nfd,
                                          (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE));
        if (m >= 0) u = nfd, n = (size_t)m;
    }
    if (!rc) rc = tok_buf_put(&word, "\xe2\x96\x81", 3);
#define END_WORD()                                                                   \
    do {                                                                             \
        if (!rc && word.n > 3) rc = word_ids(t, word.p, word.n, ids, n_ids, cap);    \
        word.n = 3;                                                                  \
    } while (0)
    for (size_t i = 0; i < n && !rc;) {
        uint32_t cp;
        size_t l = tok_utf8_next(u + i, n - i, &cp);
        if (!l) l = 1, cp = 0xfffd;
        i += l;
        utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
        if (is_white(cp)) {
            END_WORD();
            continue;
        }
        if (cp == 0 || cp == 0xfffd || cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
            cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CN)
            continue;
        int mark = cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC ||
                   cat == UTF8PROC_CATEGORY_ME;
        if (t->wpm_strip_accents && mark) continue;
        uint32_t out = t->wpm_lowercase ? (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp) : cp;
        int punct = cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
        int symbol = cat >= UTF8PROC_CATEGORY_SM && cat <= UTF8PROC_CATEGORY_SO;
        if (punct || (cp < 0x7f && symbol) || is_chinese(cp)) {
            END_WORD();
            put_cp(&word, out, &rc);
            END_WORD();
        } else {
            put_cp(&word, out, &rc);
        }
    }
    END_WORD();
#undef END_WORD
    free(nfd);
    free(word.p);
    free(clean.p);
    return rc;
}
