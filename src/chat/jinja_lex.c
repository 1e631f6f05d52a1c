/* jinja_lex.c — a template's text into tokens, as @huggingface/jinja's
 * preprocess() and tokenize() do it: drop one final newline; lstrip_blocks
 * (spaces and tabs before {%, {# and {- at a line start); trim_blocks (the
 * newline after %}, #} and -}); {% generation %} tags removed; then
 * text, comments and the tokens inside {{ }} and {% %}, with {%- / -%}
 * trimming the white space beside them. The rewrites work on the raw text,
 * inside tags and strings too, as the reference's regular expressions do.
 * Each token keeps its offset in the original text for error lines. */
#include <stdio.h>
#include <string.h>

#include "chat/jinja_internal.h"
#include "core/error.h"

/* text with, per byte, its offset in the original */
typedef struct ptext {
    char *p;
    uint32_t *map;
    size_t n;
} ptext;

static int pt_alloc(jarena *a, ptext *t, size_t cap) {
    t->p = ja_alloc(a, cap + 1);
    t->map = ja_alloc(a, (cap + 1) * sizeof(uint32_t));
    t->n = 0;
    return t->p && t->map ? 0 : -1;
}

static void pt_copy(ptext *dst, const ptext *src, size_t from, size_t to) {
    memcpy(dst->p + dst->n, src->p + from, to - from);
    memcpy(dst->map + dst->n, src->map + from, (to - from) * sizeof(uint32_t));
    dst->n += to - from;
}

static int line_terminator_end(const ptext *t, size_t i) { /* t->p[i-1] ends one */
    if (i == 0) return 1;
    unsigned char c = (unsigned char)t->p[i - 1];
    if (c == '\n' || c == '\r') return 1;
    return i >= 3 && (unsigned char)t->p[i - 3] == 0xE2 && (unsigned char)t->p[i - 2] == 0x80 &&
           (c == 0xA8 || c == 0xA9);
}

/* /^[ \t]*({[#%-])/gm -> "$1" */
static void lstrip_blocks(const ptext *in, ptext *out) {
    size_t i = 0;
    while (i < in->n) {
        if (line_terminator_end(in, i)) {
            size_t j = i;
            while (j < in->n && (in->p[j] == ' ' || in->p[j] == '\t')) j++;
            if (j + 1 < in->n && in->p[j] == '{' && strchr("#%-", in->p[j + 1]) && in->p[j + 1]) {
                pt_copy(out, in, j, j + 2);
                i = j + 2;
                continue;
            }
        }
        pt_copy(out, in, i, i + 1);
        i++;
    }
}

/* /([#%-]})\n/g -> "$1" */
static void trim_blocks(const ptext *in, ptext *out) {
    size_t i = 0;
    while (i < in->n) {
        if (i + 2 < in->n && in->p[i] && strchr("#%-", in->p[i]) && in->p[i + 1] == '}' &&
            in->p[i + 2] == '\n') {
            pt_copy(out, in, i, i + 2);
            i += 3;
            continue;
        }
        pt_copy(out, in, i, i + 1);
        i++;
    }
}

static size_t skip_space(const char *s, size_t n, size_t i) {
    while (i < n) {
        size_t j = i;
        if (!js_space(u8_next(s, n, &j))) break;
        i = j;
    }
    return i;
}

/* /{%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/ at i: its end, the end of
 * the tag (before the trailing white space), and the two dashes */
static int match_generation(const ptext *t, size_t i, size_t *tag_end, size_t *end, int *l, int *r) {
    const char *s = t->p;
    size_t n = t->n;
    if (i + 1 >= n || s[i] != '{' || s[i + 1] != '%') return 0;
    size_t k = i + 2;
    *l = k < n && s[k] == '-';
    if (*l) k++;
    k = skip_space(s, n, k);
    if (k + 3 <= n && !memcmp(s + k, "end", 3) && !(k + 10 <= n && !memcmp(s + k, "generation", 10)))
        k += 3;
    if (!(k + 10 <= n && !memcmp(s + k, "generation", 10))) return 0;
    k = skip_space(s, n, k + 10);
    *r = k < n && s[k] == '-';
    if (*r) k++;
    if (!(k + 2 <= n && s[k] == '%' && s[k + 1] == '}')) return 0;
    *tag_end = k + 2;
    *end = skip_space(s, n, k + 2);
    return 1;
}

static void strip_generation(const ptext *in, ptext *out) {
    size_t last = 0;
    for (size_t i = 0; i + 1 < in->n; i++) {
        size_t tag_end, end;
        int l, r;
        if (!match_generation(in, i, &tag_end, &end, &l, &r)) continue;
        size_t stop = i;
        while (l && stop > last) {
            size_t st;
            if (!js_space(u8_prev(in->p, stop, &st)) || st < last) break;
            stop = st;
        }
        pt_copy(out, in, last, stop);
        if (!r) pt_copy(out, in, tag_end, end);
        last = end;
        i = end - 1;
    }
    pt_copy(out, in, last, in->n);
}

/* ---- tokens ------------------------------------------------------------------ */
typedef struct lexer {
    jarena *a;
    const ptext *t;
    jtok *toks;
    int n, cap;
    const char *name;
    jstr src;
    q35_error *err;
} lexer;

int jinja_line(jstr src, size_t pos) {
    int line = 1;
    for (size_t i = 0; i < pos && i < src.n; i++) line += src.p[i] == '\n';
    return line;
}

static int lex_fail(lexer *L, size_t at, const char *what, char ch) {
    size_t pos = at < L->t->n ? L->t->map[at] : L->src.n;
    if (ch)
        return q35_fail(L->err, Q35_ERR_FORMAT, "%s:%d: %s: %c", L->name, jinja_line(L->src, pos), what, ch);
    return q35_fail(L->err, Q35_ERR_FORMAT, "%s:%d: %s", L->name, jinja_line(L->src, pos), what);
}

static int push(lexer *L, int type, const char *p, size_t len, size_t at) {
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 256;
        jtok *t = ja_alloc(L->a, (size_t)cap * sizeof *t);
        if (!t) return q35_fail(L->err, Q35_ERR_NOMEM, "%s: out of memory", L->name);
        if (L->n) memcpy(t, L->toks, (size_t)L->n * sizeof *t);
        L->toks = t;
        L->cap = cap;
    }
    L->toks[L->n].type = type;
    L->toks[L->n].v = (jstr){p, len};
    L->toks[L->n].pos = at < L->t->n ? L->t->map[at] : L->src.n;
    L->n++;
    return 0;
}

static int last_type(const lexer *L) { return L->n ? L->toks[L->n - 1].type : -1; }

static void strip_trailing(lexer *L) {
    if (!L->n || L->toks[L->n - 1].type != T_TEXT) return;
    jstr *v = &L->toks[L->n - 1].v;
    while (v->n) {
        size_t st;
        if (!js_space(u8_prev(v->p, v->n, &st))) break;
        v->n = st;
    }
    if (!v->n) L->n--;
}

static int is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* consumeWhile: running into the end while the predicate holds is an error */
static int consume(lexer *L, size_t *i, int (*pred)(char)) {
    while (*i < L->t->n && pred(L->t->p[*i]))
        if (++*i >= L->t->n) return lex_fail(L, *i, "Unexpected end of input", 0);
    return 0;
}

static int consume_space(lexer *L, size_t *i) {
    const char *s = L->t->p;
    size_t n = L->t->n;
    while (*i < n) {
        size_t j = *i;
        if (!js_space(u8_next(s, n, &j))) break;
        *i = j;
        if (*i >= n) return lex_fail(L, *i, "Unexpected end of input", 0);
    }
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)(c | 32);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* a string literal from after its quote; *i ends on the closing quote */
static int lex_string(lexer *L, size_t *i, char quote, jstr *out) {
    const char *s = L->t->p;
    size_t n = L->t->n, start = *i;
    jbuf b;
    jb_init(&b, L->a, 0);
    uint32_t pending_hi = 0; /* a \u high surrogate waiting for its low half */
    for (;;) {
        if (*i >= n) return lex_fail(L, start, "Unexpected end of input", 0);
        char ch = s[*i];
        if (ch == quote) break;
        if (ch != '\\') {
            if (pending_hi) { jb_add_cp(&b, 0xFFFD); pending_hi = 0; }
            jb_addch(&b, ch);
            ++*i;
            continue;
        }
        ++*i;
        if (*i >= n) return lex_fail(L, *i, "Unexpected end of input", 0);
        char e = s[(*i)++];
        if (e == 'x' || e == 'u') {
            int len = e == 'x' ? 2 : 4;
            uint32_t v = 0;
            for (int k = 0; k < len; k++) {
                int d = *i + (size_t)k < n ? hexval(s[*i + (size_t)k]) : -1;
                if (d < 0) return lex_fail(L, *i, "Invalid hexadecimal escape sequence", 0);
                v = v * 16 + (uint32_t)d;
            }
            *i += (size_t)len;
            if (v >= 0xDC00 && v < 0xE000 && pending_hi) {
                jb_add_cp(&b, 0x10000 + ((pending_hi - 0xD800) << 10) + (v - 0xDC00));
                pending_hi = 0;
                continue;
            }
            if (pending_hi) { jb_add_cp(&b, 0xFFFD); pending_hi = 0; }
            if (v >= 0xD800 && v < 0xDC00) pending_hi = v;
            else jb_add_cp(&b, v >= 0xDC00 && v < 0xE000 ? 0xFFFD : v);
            continue;
        }
        if (pending_hi) { jb_add_cp(&b, 0xFFFD); pending_hi = 0; }
        const char *from = "ntrbfv'\"\\", *to = "\n\t\r\b\f\v'\"\\";
        const char *f = e ? strchr(from, e) : NULL;
        if (!f) return lex_fail(L, *i - 1, "Unexpected escaped character", e);
        jb_addch(&b, to[f - from]);
    }
    if (pending_hi) jb_add_cp(&b, 0xFFFD);
    if (b.failed) return q35_fail(L->err, Q35_ERR_NOMEM, "%s: out of memory", L->name);
    *out = jb_str(&b);
    return 0;
}

static const struct { const char *seq; int type; } RULES[] = {
    {"{%", T_OPEN_STMT}, {"%}", T_CLOSE_STMT}, {"{{", T_OPEN_EXPR}, {"}}", T_CLOSE_EXPR},
    {"(", T_LPAREN}, {")", T_RPAREN}, {"{", T_LBRACE}, {"}", T_RBRACE}, {"[", T_LBRACKET},
    {"]", T_RBRACKET}, {",", T_COMMA}, {".", T_DOT}, {":", T_COLON}, {"|", T_PIPE},
    {"<=", T_CMP}, {">=", T_CMP}, {"==", T_CMP}, {"!=", T_CMP}, {"<", T_CMP}, {">", T_CMP},
    {"+", T_ADD}, {"-", T_ADD}, {"~", T_ADD}, {"**", T_POW}, {"*", T_MUL}, {"//", T_MUL},
    {"/", T_MUL}, {"%", T_MUL}, {"=", T_EQUALS}};

static int tokenize(lexer *L) {
    const char *s = L->t->p;
    size_t n = L->t->n, i = 0;
    int depth = 0; /* curly brackets open inside {{ }} */
    while (i < n) {
        int last = last_type(L);
        if (last < 0 || last == T_CLOSE_STMT || last == T_CLOSE_EXPR || last == T_COMMENT) {
            size_t end = i;
            for (;;) {
                const char *q = end < n ? memchr(s + end, '{', n - end) : NULL;
                if (!q) { end = n; break; }
                end = (size_t)(q - s);
                char next = end + 1 < n ? s[end + 1] : 0;
                if (next == '%' || next == '{' || next == '#') break;
                end++;
            }
            if (end > i) {
                if (push(L, T_TEXT, s + i, end - i, i)) return -1;
                i = end;
                continue;
            }
        }
        if (s[i] == '{') {
            char next = i + 1 < n ? s[i + 1] : 0;
            if (next == '#') {
                size_t at = i;
                i += 2;
                int before = i < n && s[i] == '-';
                if (before) i++;
                const char *q = NULL;
                for (size_t k = i; k + 1 < n; k++)
                    if (s[k] == '#' && s[k + 1] == '}') { q = s + k; break; }
                if (!q) return lex_fail(L, at, "Missing end of comment tag", 0);
                size_t end = (size_t)(q - s), clen = end - i;
                int after = clen > 0 && s[end - 1] == '-';
                if (after) clen--;
                if (before) strip_trailing(L);
                if (push(L, T_COMMENT, s + i, clen, at)) return -1;
                i = end + 2;
                if (after) i = skip_space(s, n, i);
                continue;
            }
            if (i + 2 < n && s[i + 2] == '-' && (next == '%' || next == '{')) {
                strip_trailing(L);
                if (push(L, next == '%' ? T_OPEN_STMT : T_OPEN_EXPR, s + i, 2, i)) return -1;
                if (next == '{') depth = 0;
                i += 3;
                continue;
            }
        }
        if (consume_space(L, &i)) return -1;
        char ch = s[i];
        if (ch == '-' && i + 2 < n && s[i + 2] == '}' && (s[i + 1] == '%' || s[i + 1] == '}')) {
            if (push(L, s[i + 1] == '%' ? T_CLOSE_STMT : T_CLOSE_EXPR, s + i + 1, 2, i)) return -1;
            i = skip_space(s, n, i + 3);
            continue;
        }
        if (ch == '-' || ch == '+') {
            if (last < 0 || last == T_TEXT) return lex_fail(L, i, "Unexpected character", ch);
            if (!(last == T_IDENT || last == T_NUMBER || last == T_STRING || last == T_RPAREN ||
                  last == T_RBRACKET)) {
                size_t at = i++;
                if (consume(L, &i, is_digit)) return -1;
                size_t digits = i - at - 1;
                if (digits > 0 && i + 1 < n && s[i] == '.' && is_digit(s[i + 1])) {
                    i++;
                    if (consume(L, &i, is_digit)) return -1;
                }
                if (push(L, digits ? T_NUMBER : T_UNARY, s + at, i - at, at)) return -1;
                continue;
            }
        }
        int matched = 0;
        for (size_t r = 0; r < sizeof RULES / sizeof RULES[0]; r++) {
            size_t len = strlen(RULES[r].seq);
            if (RULES[r].seq[0] != ch) continue;
            if (RULES[r].type == T_CLOSE_EXPR && depth > 0) continue;
            if (i + len > n || memcmp(s + i, RULES[r].seq, len)) continue;
            if (push(L, RULES[r].type, s + i, len, i)) return -1;
            if (RULES[r].type == T_OPEN_EXPR) depth = 0;
            else if (RULES[r].type == T_LBRACE) depth++;
            else if (RULES[r].type == T_RBRACE) depth--;
            i += len;
            matched = 1;
            break;
        }
        if (matched) continue;
        if (ch == '\'' || ch == '"') {
            size_t at = i++;
            jstr v;
            if (lex_string(L, &i, ch, &v)) return -1;
            if (push(L, T_STRING, v.p, v.n, at)) return -1;
            i++;
            continue;
        }
        if (is_digit(ch)) {
            size_t at = i;
            if (consume(L, &i, is_digit)) return -1;
            if (last != T_DOT && i + 1 < n && s[i] == '.' && is_digit(s[i + 1])) {
                i++;
                if (consume(L, &i, is_digit)) return -1;
            }
            if (push(L, T_NUMBER, s + at, i - at, at)) return -1;
            continue;
        }
        if (is_word(ch)) {
            size_t at = i;
            if (consume(L, &i, is_word)) return -1;
            if (push(L, T_IDENT, s + at, i - at, at)) return -1;
            continue;
        }
        if ((unsigned char)ch >= 0x80) {
            size_t j = i;
            uint32_t cp = u8_next(s, n, &j);
            size_t pos = L->t->map[i];
            return q35_fail(L->err, Q35_ERR_FORMAT, "%s:%d: Unexpected character: U+%04X", L->name,
                            jinja_line(L->src, pos), (unsigned)cp);
        }
        return lex_fail(L, i, "Unexpected character", ch);
    }
    return push(L, T_EOF, s + n, 0, n);
}

int jinja_lex(jarena *a, jstr src, const char *name, jtok **toks, int *n, q35_error *err) {
    if (src.n > 0xFFFFFFF0u) return q35_fail(err, Q35_ERR_ARG, "%s: template larger than 4 GiB", name);
    ptext t0, t1, t2, t3;
    if (pt_alloc(a, &t0, src.n) || pt_alloc(a, &t1, src.n) || pt_alloc(a, &t2, src.n) ||
        pt_alloc(a, &t3, src.n))
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", name);
    memcpy(t0.p, src.p, src.n);
    for (size_t i = 0; i < src.n; i++) t0.map[i] = (uint32_t)i;
    t0.n = src.n;
    if (t0.n && t0.p[t0.n - 1] == '\n') t0.n--;
    lstrip_blocks(&t0, &t1);
    trim_blocks(&t1, &t2);
    strip_generation(&t2, &t3);
    lexer L = {a, &t3, NULL, 0, 0, name, src, err};
    if (tokenize(&L)) return -1;
    *toks = L.toks;
    *n = L.n;
    return 0;
}
