/* pretok.c — pre-tokenizers: the text of one fragment split into the
 * pieces BPE runs on, step by step as tokenizers' PreTokenizedString does
 * (each step splits every piece the step before left; empty pieces go).
 * Regular expressions are PCRE2's (UTF + UCP, JIT-compiled where the
 * platform has it), with \s and \S read as Oniguruma reads them (Unicode
 * White_Space: PCRE2's \s leaves out U+0085). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"
#include "tokenizer/tok_internal.h"

/* ---- GPT-2's byte-to-unicode map ------------------------------------------
 * Printable bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for themselves;
 * the other 68, in byte order, for U+0100 onwards. */

static int printable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

uint32_t tok_byte_to_cp(uint8_t b) {
    if (printable(b)) return b;
    uint32_t k = 0;
    for (int x = 0; x < b; x++) k += !printable(x);
    return 256 + k;
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return printable((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = 0;
    for (int x = 0; x < 256; x++)
        if (!printable(x) && k++ == cp - 256) return x;
    return -1;
}

/* ---- regular expressions ------------------------------------------------- */

#define WHITE_MEMBERS "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* pattern with \s, \S rewritten (see above), into out. */
static int translate(const char *p, size_t n, tok_buf *out) {
    int in_class = 0, rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's') rc = tok_buf_put(out, in_class ? WHITE_MEMBERS : "[" WHITE_MEMBERS "]",
                                          strlen(in_class ? WHITE_MEMBERS : "[" WHITE_MEMBERS "]"));
            else if (d == 'S' && !in_class) rc = tok_buf_put(out, "[^" WHITE_MEMBERS "]",
                                                            strlen("[^" WHITE_MEMBERS "]"));
            else rc = tok_buf_put(out, p + i, 2);
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            rc = tok_buf_put(out, p + i, 1);
            /* a ']' right after '[' or '[^' is a literal */
            if (!rc && i + 1 < n && p[i + 1] == '^') rc = tok_buf_put(out, p + ++i, 1);
            if (!rc && i + 1 < n && p[i + 1] == ']') rc = tok_buf_put(out, p + ++i, 1);
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
            const char *end = NULL;
            for (size_t k = i + 2; k + 1 < n; k++)
                if (p[k] == ':' && p[k + 1] == ']') {
                    end = p + k + 2;
                    break;
                }
            if (end) {
                rc = tok_buf_put(out, p + i, (size_t)(end - (p + i)));
                i = (size_t)(end - p) - 1;
                continue;
            }
        }
        if (in_class && c == ']') in_class = 0;
        rc = tok_buf_put(out, p + i, 1);
    }
    return rc;
}

pcre2_code *tok_regex(const char *pattern, size_t len, int dollar_end, const char *file,
                      q35_error *err) {
    tok_buf b = {0};
    if (translate(pattern, len, &b) || tok_buf_put(&b, "", 0)) {
        free(b.p);
        q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", file);
        return NULL;
    }
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)b.p, b.n,
                                   PCRE2_UTF | PCRE2_UCP | (dollar_end ? PCRE2_DOLLAR_ENDONLY : 0),
                                   &code, &at, NULL);
    free(b.p);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        q35_fail(err, Q35_ERR_FORMAT, "%s: regex \"%.80s\" does not compile: %s (at %zu)", file,
                 pattern, (const char *)msg, (size_t)at);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* no JIT: the interpreter runs it */
    return re;
}

void tok_steps_free(tok_step *s, int n) {
    for (int i = 0; s && i < n; i++) {
        free(s[i].s1);
        free(s[i].s2);
        pcre2_code_free(s[i].re);
    }
    free(s);
}

/* ---- splitting ----------------------------------------------------------- */

static int spans_add(tok_spans *o, size_t off, size_t len, int first) {
    if (len == 0) return Q35_OK; /* empty pieces go */
    if (tok_grow(&o->v, &o->cap, o->n, sizeof *o->v, 64)) return Q35_ERR_NOMEM;
    o->v[o->n++] = (tok_span){off, len, first};
    return Q35_OK;
}

static int parts_add(parts *p, size_t a, size_t b, int match) {
    if (tok_grow(&p->v, &p->cap, p->n, sizeof *p->v, 32)) return Q35_ERR_NOMEM;
    p->v[p->n++] = (part){a, b, match};
    return Q35_OK;
}

/* The JIT runs on its default 32 KiB stack; a match that needs more gets a
 * stack of up to 16 MiB, made on first need. */
static int match(const pcre2_code *re, const char *s, size_t n, size_t at, pre_ctx *c) {
    int m = pcre2_match(re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, c->md, c->mc);
    if (m != PCRE2_ERROR_JIT_STACKLIMIT || c->js) return m;
    c->mc = pcre2_match_context_create(NULL);
    c->js = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
    if (!c->mc || !c->js) return PCRE2_ERROR_NOMEMORY;
    pcre2_jit_stack_assign(c->mc, NULL, c->js);
    return pcre2_match(re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, c->md, c->mc);
}

/* Oniguruma's find_iter over s[0..n): matched and unmatched parts. */
static int regex_parts(const pcre2_code *re, const char *s, size_t n, pre_ctx *c, parts *out) {
    size_t at = 0, prev = 0, last_end = (size_t)-1;
    while (at <= n) {
        int m = match(re, s, n, at, c);
        if (m == PCRE2_ERROR_NOMATCH) break;
        if (m < 0) return m == PCRE2_ERROR_NOMEMORY ? Q35_ERR_NOMEM : Q35_ERR_FORMAT;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t a = ov[0], b = ov[1];
        if (a == b) { /* an empty match: search again after the next character */
            uint32_t cp;
            size_t len = a < n ? tok_utf8_next((const uint8_t *)s + a, n - a, &cp) : 1;
            at = a + (len ? len : 1);
            if (a == last_end) continue;
        } else {
            at = b;
        }
        last_end = b;
        if (prev != a && parts_add(out, prev, a, 0)) return Q35_ERR_NOMEM;
        if (parts_add(out, a, b, 1)) return Q35_ERR_NOMEM;
        prev = b;
    }
    if (prev != n && parts_add(out, prev, n, 0)) return Q35_ERR_NOMEM;
    return Q35_OK;
}

/* Parts by a character class: each character that is in it is a match. */
static int char_parts(const char *s, size_t n, int (*in)(uint32_t), parts *out) {
    size_t i = 0, run = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = tok_utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (!len) len = 1, cp = 0xfffd;
        if (in(cp)) {
            if (run < i && parts_add(out, run, i, 0)) return Q35_ERR_NOMEM;
            if (parts_add(out, i, i + len, 1)) return Q35_ERR_NOMEM;
            run = i + len;
        }
        i += len;
    }
    if (run < n && parts_add(out, run, n, 0)) return Q35_ERR_NOMEM;
    return Q35_OK;
}

/* tokenizers' NormalizedString::split: the parts grouped by behaviour,
 * appended as spans of the piece at arena offset base. */
static int apply_behaviour(const parts *p, int behaviour, size_t base, int first, tok_spans *o) {
    int rc = Q35_OK;
    size_t a = 0, b = 0;
    int have = 0, prev_match = 0;
#define FLUSH()                                                                    \
    do {                                                                           \
        if (have && (rc = spans_add(o, base + a, b - a, first && a == 0))) return rc; \
        have = 0;                                                                  \
    } while (0)
    if (behaviour == SPLIT_MERGED_NEXT) { /* mirror of MergedWithPrevious */
        int start = o->n;
        for (int i = p->n - 1; i >= 0; i--) {
            const part *q = &p->v[i];
            if (q->match && !prev_match && have) {
                a = q->a;
            } else {
                FLUSH();
                a = q->a, b = q->b, have = 1;
            }
            prev_match = q->match;
        }
        FLUSH();
        for (int i = start, j = o->n - 1; i < j; i++, j--) { /* back in text order */
            tok_span x = o->v[i];
            o->v[i] = o->v[j];
            o->v[j] = x;
        }
        return Q35_OK;
    }
    for (int i = 0; i < p->n; i++) {
        const part *q = &p->v[i];
        switch (behaviour) {
        case SPLIT_REMOVED:
            if (!q->match) {
                FLUSH();
                a = q->a, b = q->b, have = 1;
            }
            break;
        case SPLIT_ISOLATED:
            FLUSH();
            a = q->a, b = q->b, have = 1;
            break;
        case SPLIT_CONTIGUOUS:
            if (have && q->match == prev_match) b = q->b;
            else {
                FLUSH();
                a = q->a, b = q->b, have = 1;
            }
            break;
        case SPLIT_MERGED_PREV:
            if (q->match && !prev_match && have) b = q->b;
            else {
                FLUSH();
                a = q->a, b = q->b, have = 1;
            }
            break;
        }
        prev_match = q->match;
    }
    FLUSH();
#undef FLUSH
    return Q35_OK;
}

static int is_numeric(uint32_t cp) {
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

static int is_white(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* Metaspace: ' ' -> the replacement, the prefix, then (split) a piece per
 * replacement, each replacement starting the piece it begins. */
static int metaspace(const tok_step *st, tok_buf *arena, const tok_span *in, tok_spans *o,
                     parts *p) {
    size_t base = arena->n;
    int rc = Q35_OK;
    int starts = in->len >= st->n1 && memcmp(arena->p + in->off, st->s1, st->n1) == 0;
    int lead_space = in->len > 0 && arena->p[in->off] == ' ';
    if (!starts && !lead_space &&
        (st->a == PREPEND_ALWAYS || (st->a == PREPEND_FIRST && in->first)))
        rc = tok_buf_put(arena, st->s1, st->n1);
    for (size_t i = 0; i < in->len && !rc; i++) {
        char ch = arena->p[in->off + i]; /* by value: appending may move the arena */
        rc = ch == ' ' ? tok_buf_put(arena, st->s1, st->n1) : tok_buf_put(arena, &ch, 1);
    }
    if (rc) return rc;
    size_t n = arena->n - base;
    if (!st->b) return spans_add(o, base, n, in->first);
    p->n = 0;
    for (size_t i = 0; i < n;) {
        if (i + st->n1 <= n && memcmp(arena->p + base + i, st->s1, st->n1) == 0) {
            if (parts_add(p, i, i + st->n1, 1)) return Q35_ERR_NOMEM;
            i += st->n1;
        } else {
            size_t j = i + 1;
            while (j < n && !(j + st->n1 <= n && memcmp(arena->p + base + j, st->s1, st->n1) == 0))
                j++;
            if (parts_add(p, i, j, 0)) return Q35_ERR_NOMEM;
            i = j;
        }
    }
    return apply_behaviour(p, SPLIT_MERGED_NEXT, base, in->first, o);
}

static int run_step(const tok_step *st, pre_ctx *c, tok_buf *arena, const tok_span *in,
                    tok_spans *o) {
    parts *p = &c->p;
    p->n = 0;
    int rc;
    switch (st->kind) {
    case P_SPLIT:
        rc = regex_parts(st->re, arena->p + in->off, in->len, c, p);
        if (rc) return rc;
        if (st->b)
            for (int i = 0; i < p->n; i++) p->v[i].match = !p->v[i].match;
        return apply_behaviour(p, st->a, in->off, in->first, o);
    case P_BYTELEVEL: {
        tok_span sp = *in;
        if (st->a && (in->len == 0 || arena->p[in->off] != ' ')) { /* add_prefix_space */
            size_t base = arena->n;
            if ((rc = tok_buf_put(arena, " ", 1)) || (rc = tok_buf_copy(arena, in->off, in->len)))
                return rc;
            sp = (tok_span){base, in->len + 1, in->first};
        }
        if (!st->b) return spans_add(o, sp.off, sp.len, sp.first);
        if ((rc = regex_parts(st->re, arena->p + sp.off, sp.len, c, p))) return rc;
        return apply_behaviour(p, SPLIT_ISOLATED, sp.off, sp.first, o);
    }
    case P_METASPACE:
        return metaspace(st, arena, in, o, p);
    case P_DIGITS:
        if ((rc = char_parts(arena->p + in->off, in->len, is_numeric, p))) return rc;
        return apply_behaviour(p, st->a ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, in->off, in->first, o);
    case P_WHITESPACE_SPLIT:
        if ((rc = char_parts(arena->p + in->off, in->len, is_white, p))) return rc;
        return apply_behaviour(p, SPLIT_REMOVED, in->off, in->first, o);
    case P_WHITESPACE:
        rc = regex_parts(st->re, arena->p + in->off, in->len, c, p);
        if (rc) return rc;
        for (int i = 0; i < p->n; i++) p->v[i].match = !p->v[i].match;
        return apply_behaviour(p, SPLIT_REMOVED, in->off, in->first, o);
    default:
        return spans_add(o, in->off, in->len, in->first);
    }
}

/* Runs steps k.. on one span, depth first: each piece of the last step
 * goes to each() as soon as it exists, so that a long text never becomes
 * one long list of pieces. */
static int descend(const q35_tokenizer *t, tok_pre_work *w, int k, tok_span sp,
                   int (*each)(void *user, const char *s, size_t n), void *user) {
    if (k == t->n_pre) return each(user, w->arena.p + sp.off, sp.len);
    tok_spans *out = &w->level[k];
    out->n = 0;
    int rc = run_step(&t->pre[k], &w->c, &w->arena, &sp, out);
    for (int i = 0; i < out->n && !rc; i++) rc = descend(t, w, k + 1, out->v[i], each, user);
    return rc;
}

int tok_pretokenize(const q35_tokenizer *t, tok_pre_work *w, const char *s, size_t n, int first,
                    int (*each)(void *user, const char *s, size_t n), void *user) {
    if (!w->level && t->n_pre > 0) {
        w->level = calloc((size_t)t->n_pre, sizeof *w->level);
        if (!w->level) return Q35_ERR_NOMEM;
    }
    if (!w->c.md && !(w->c.md = pcre2_match_data_create(1, NULL))) return Q35_ERR_NOMEM;
    w->arena.n = 0;
    w->arena.limit = 0;
    int rc = tok_buf_put(&w->arena, s, n);
    if (!rc) /* steps that add text (Metaspace, ByteLevel's prefix) grow it this far */
        w->arena.limit = tok_grow_limit(n);
    if (rc || n == 0) return rc;
    return descend(t, w, 0, (tok_span){0, n, first}, each, user);
}

void tok_pre_work_free(const q35_tokenizer *t, tok_pre_work *w) {
    for (int i = 0; w->level && i < t->n_pre; i++) free(w->level[i].v);
    free(w->level);
    free(w->arena.p);
    free(w->c.p.v);
    pcre2_match_data_free(w->c.md);
    pcre2_match_context_free(w->c.mc);
    pcre2_jit_stack_free(w->c.js);
    memset(w, 0, sizeof *w);
}
