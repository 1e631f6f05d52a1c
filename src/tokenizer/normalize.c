/* normalize.c — UTF-8 handling and the normalizer steps of tokenizer.json
 * (NFC, NFD, NFKC, NFKD through utf8proc; Replace; Prepend; Strip), run on
 * one fragment of text at a time as tokenizers runs them. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

/* Room for n more bytes and a NUL; Q35_ERR_FORMAT past b->limit. */
static int tok_buf_room(tok_buf *b, size_t n) {
    if (b->limit && (n > b->limit || b->n > b->limit - n)) return Q35_ERR_FORMAT;
    if (b->n + n + 1 <= b->cap) return Q35_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) {
        if (cap > SIZE_MAX / 2) return Q35_ERR_NOMEM;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) return Q35_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return Q35_OK;
}

size_t tok_grow_limit(size_t n) {
    if (n > (SIZE_MAX - TOK_GROW_SLACK) / TOK_GROW_FACTOR) return SIZE_MAX;
    return n * TOK_GROW_FACTOR + TOK_GROW_SLACK;
}

int tok_buf_put(tok_buf *b, const void *s, size_t n) {
    int rc = tok_buf_room(b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return Q35_OK;
}

int tok_buf_copy(tok_buf *b, size_t off, size_t n) {
    int rc = tok_buf_room(b, n);
    if (rc) return rc;
    memmove(b->p + b->n, b->p + off, n);
    b->n += n;
    b->p[b->n] = '\0';
    return Q35_OK;
}

size_t tok_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t c;
    size_t len;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xe0) == 0xc0) len = 2, c = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0) len = 3, c = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0) len = 4, c = s[0] & 0x07;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min_cp[len] || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) return 0;
    *cp = c;
    return len;
}

/* How many bytes starting at s (n > 0 left, s[0] not starting a valid
 * character) form one maximal subpart of an ill-formed sequence: the
 * longest prefix of a well-formed sequence, at least one byte. The second
 * byte's range depends on the first (E0: A0..BF, ED: 80..9F, F0: 90..BF,
 * F4: 80..8F), as in Unicode's Table 3-7. */
static size_t maximal_subpart(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 1;
    }
    size_t i = 1;
    if (i < n && s[i] >= lo && s[i] <= hi) {
        i++;
        while (i < need && i < n && (s[i] & 0xc0) == 0x80) i++;
    }
    return i;
}

int tok_utf8_sanitize(const char *s, size_t n, tok_buf *out) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0, run = 0; /* valid bytes not yet copied start at run */
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = tok_utf8_next(u + i, n - i, &cp);
        if (len) {
            i += len;
            continue;
        }
        if (tok_buf_put(out, s + run, i - run) || tok_buf_put(out, "\xef\xbf\xbd", 3))
            return Q35_ERR_NOMEM;
        i += maximal_subpart(u + i, n - i);
        run = i;
    }
    return tok_buf_put(out, s + run, n - run);
}

/* Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s
 * match). */
static int is_white(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

static int is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s[i] >= 0x80) return 0;
    return 1;
}

static int unicode_form(int kind, const char *s, size_t n, tok_buf *out) {
    if (is_ascii(s, (size_t)n)) return tok_buf_put(out, s, n);
    int opt = UTF8PROC_STABLE;
    if (kind == N_NFC || kind == N_NFKC) opt |= UTF8PROC_COMPOSE;
    else opt |= UTF8PROC_DECOMPOSE;
    if (kind == N_NFKC || kind == N_NFKD) opt |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      (utf8proc_option_t)opt);
    if (m < 0) { /* only for invalid UTF-8, which sanitizing removed */
        free(dst);
        return tok_buf_put(out, s, n);
    }
    int rc = tok_buf_put(out, dst, (size_t)m);
    free(dst);
    return rc;
}

int tok_replace_literal(const tok_step *st, const char *s, size_t n, tok_buf *out) {
    size_t i = 0, run = 0;
    int rc;
    if (st->n1 == 0) return tok_buf_put(out, s, n);
    while (i + st->n1 <= n) {
        if (memcmp(s + i, st->s1, st->n1) == 0) {
            if ((rc = tok_buf_put(out, s + run, i - run)) ||
                (rc = tok_buf_put(out, st->s2, st->n2)))
                return rc;
            i += st->n1;
            run = i;
        } else {
            i++;
        }
    }
    return tok_buf_put(out, s + run, n - run);
}

static int replace_regex(const tok_step *st, const char *s, size_t n, tok_buf *out) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(st->re, NULL);
    if (!md) return Q35_ERR_NOMEM;
    size_t at = 0, run = 0;
    int rc = Q35_OK;
    while (at <= n) {
        int m = pcre2_match(st->re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (m < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if ((rc = tok_buf_put(out, s + run, ov[0] - run)) ||
            (rc = tok_buf_put(out, st->s2, st->n2)))
            break;
        run = ov[1];
        if (ov[1] > ov[0]) {
            at = ov[1];
        } else { /* an empty match: go on after the next character */
            uint32_t cp;
            size_t len = ov[0] < n ? tok_utf8_next((const uint8_t *)s + ov[0], n - ov[0], &cp) : 1;
            if (ov[0] < n && (rc = tok_buf_put(out, s + ov[0], len ? len : 1))) break;
            at = ov[0] + (len ? len : 1);
            run = at;
        }
    }
    pcre2_match_data_free(md);
    if (rc) return rc;
    return run < n ? tok_buf_put(out, s + run, n - run) : Q35_OK;
}

static int strip(const tok_step *st, const char *s, size_t n, tok_buf *out) {
    const uint8_t *u = (const uint8_t *)s;
    size_t a = 0, b = n;
    uint32_t cp;
    size_t len;
    if (st->a)
        while (a < n && (len = tok_utf8_next(u + a, n - a, &cp)) && is_white(cp)) a += len;
    if (st->b)
        while (b > a) {
            size_t k = b - 1;
            while (k > a && (u[k] & 0xc0) == 0x80) k--;
            if (!(len = tok_utf8_next(u + k, b - k, &cp)) || !is_white(cp)) break;
            b = k;
        }
    return tok_buf_put(out, s + a, b - a);
}

static int run_step(const tok_step *st, const char *s, size_t n, tok_buf *out) {
    switch (st->kind) {
    case N_NFC: case N_NFD: case N_NFKC: case N_NFKD:
        return unicode_form(st->kind, s, n, out);
    case N_REPLACE:
        return st->re ? replace_regex(st, s, n, out) : tok_replace_literal(st, s, n, out);
    case N_PREPEND: {
        int rc = n ? tok_buf_put(out, st->s1, st->n1) : Q35_OK;
        return rc ? rc : tok_buf_put(out, s, n);
    }
    case N_STRIP:
        return strip(st, s, n, out);
    default:
        return tok_buf_put(out, s, n);
    }
}

int tok_normalize(const q35_tokenizer *t, const char *s, size_t n, tok_buf *out) {
    out->n = 0;
    if (t->n_norm == 0) return tok_buf_put(out, s, n);
    size_t limit = tok_grow_limit(n);
    tok_buf a = {.limit = limit}, b = {.limit = limit};
    int rc = tok_buf_put(&a, s, n);
    for (int i = 0; i < t->n_norm && !rc; i++) {
        b.n = 0;
        rc = run_step(&t->norm[i], a.p, a.n, &b);
        tok_buf tmp = a;
        a = b;
        b = tmp;
    }
    if (!rc) rc = tok_buf_put(out, a.p, a.n);
    free(a.p);
    free(b.p);
    return rc;
}
