/* jinja_value.c — the interpreter's memory (arena, buffers), UTF-8 and
 * UTF-16 helpers, and values with their JavaScript meanings: number
 * printing, JSON (toJSON, JSON.stringify), equality and ordering, and the
 * conversion of a parsed JSON context. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja_internal.h"
#include "core/error.h"

/* ---- arena ---------------------------------------------------------------- */
struct jchunk {
    jchunk *next;
    size_t cap, used;
    max_align_t data[];
};

#define CHUNK (64u * 1024u)

void *ja_alloc(jarena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (n == 0) n = sizeof(max_align_t);
    jchunk *h = a->head;
    if (h && h->cap - h->used >= n) {
        void *p = (char *)h->data + h->used;
        h->used += n;
        return p;
    }
    size_t cap = n > CHUNK / 4 ? n : CHUNK;
    if (cap > SIZE_MAX - sizeof(jchunk) || (a->limit && (a->used + cap > a->limit || a->used + cap < a->used)))
        return NULL;
    jchunk *k = malloc(sizeof(jchunk) + cap);
    if (!k) return NULL;
    a->used += cap;
    k->cap = cap;
    k->used = n;
    if (cap == n && h) { /* a big block of its own: keep filling the current chunk */
        k->next = h->next;
        h->next = k;
    } else {
        k->next = h;
        a->head = k;
    }
    return k->data;
}

void ja_free(jarena *a) {
    for (jchunk *k = a->head, *next; k; k = next) {
        next = k->next;
        free(k);
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- strings and buffers -------------------------------------------------- */
int js_eq(jstr a, jstr b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }
int js_eqc(jstr a, const char *c) { return js_eq(a, (jstr){c, strlen(c)}); }

void jb_init(jbuf *b, jarena *a, size_t max) {
    b->a = a;
    b->p = NULL;
    b->n = b->cap = 0;
    b->max = max;
    b->failed = 0;
}

void jb_add(jbuf *b, const char *s, size_t n) {
    if (b->failed || n == 0) return;
    if (b->max && (n > b->max || b->n > b->max - n)) {
        b->failed = 2;
        return;
    }
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->failed = 1;
                return;
            }
            cap *= 2;
        }
        char *p = ja_alloc(b->a, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void jb_adds(jbuf *b, jstr s) { jb_add(b, s.p, s.n); }
void jb_addc(jbuf *b, const char *s) { jb_add(b, s, strlen(s)); }
void jb_addch(jbuf *b, char c) { jb_add(b, &c, 1); }

void jb_add_cp(jbuf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    jb_add(b, u, n);
}

jstr jb_str(const jbuf *b) { return (jstr){b->p ? b->p : "", b->n}; }

/* ---- UTF-8 ----------------------------------------------------------------- */
uint32_t u8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s;
    size_t k = *i;
    uint32_t c = u[k];
    int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (k + (size_t)len > n) { /* cannot happen on sanitized text */
        *i = k + 1;
        return 0xFFFD;
    }
    if (len == 2) c = (c & 0x1F) << 6 | (u[k + 1] & 0x3F);
    else if (len == 3) c = (c & 0x0F) << 12 | (u[k + 1] & 0x3F) << 6 | (u[k + 2] & 0x3F);
    else if (len == 4)
        c = (c & 0x07) << 18 | (u[k + 1] & 0x3F) << 12 | (u[k + 2] & 0x3F) << 6 | (u[k + 3] & 0x3F);
    *i = k + (size_t)len;
    return c;
}

uint32_t u8_prev(const char *s, size_t i, size_t *start) {
    size_t k = i - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80 && i - k < 4) k--;
    *start = k;
    size_t j = k;
    return u8_next(s, i, &j);
}

int js_space(uint32_t c) {
    if (c <= 32) return c == 32 || (c >= 9 && c <= 13);
    return c == 160 || c == 5760 || (c >= 8192 && c <= 8202) || c == 8232 || c == 8233 ||
           c == 8239 || c == 8287 || c == 12288 || c == 65279;
}

static int u8_valid(const unsigned char *u, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = u[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : 0;
        if (!need || len - i <= need) return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        if (u[i + 1] < lo || u[i + 1] > hi) return 0;
        for (size_t k = 2; k <= need; k++)
            if ((u[i + k] & 0xC0) != 0x80) return 0;
        i += need + 1;
    }
    return 1;
}

int u8_sanitize(jarena *a, const char *s, size_t len, jstr *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i;
    if (u8_valid(u, len)) {
        char *p = ja_alloc(a, len + 1);
        if (!p) return -1;
        if (len) memcpy(p, s, len);
        p[len] = '\0';
        *out = (jstr){p, len};
        return 0;
    }
    jbuf b;
    jb_init(&b, a, 0);
    uint32_t cp = 0;
    unsigned need = 0, seen = 0, lo = 0x80, hi = 0xBF;
    for (i = 0; i < len; i++) {
        unsigned c = u[i];
        if (!need) {
            if (c < 0x80) jb_addch(&b, (char)c);
            else if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
            else if (c >= 0xE0 && c <= 0xEF) {
                if (c == 0xE0) lo = 0xA0;
                if (c == 0xED) hi = 0x9F;
                need = 2; cp = c & 0x0F;
            } else if (c >= 0xF0 && c <= 0xF4) {
                if (c == 0xF0) lo = 0x90;
                if (c == 0xF4) hi = 0x8F;
                need = 3; cp = c & 0x07;
            } else jb_add_cp(&b, 0xFFFD);
            continue;
        }
        if (c < lo || c > hi) {
            need = seen = 0; cp = 0; lo = 0x80; hi = 0xBF;
            jb_add_cp(&b, 0xFFFD);
            i--; /* this byte starts afresh */
            continue;
        }
        lo = 0x80; hi = 0xBF;
        cp = cp << 6 | (c & 0x3F);
        if (++seen == need) {
            jb_add_cp(&b, cp);
            need = seen = 0; cp = 0;
        }
    }
    if (need) jb_add_cp(&b, 0xFFFD);
    if (b.failed) return -1;
    if (!b.p) jb_add(&b, "", 0);
    *out = jb_str(&b);
    return 0;
}

size_t u16_len(jstr s) {
    size_t n = 0;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if ((c & 0xC0) != 0x80) n += c >= 0xF0 ? 2 : 1;
    }
    return n;
}

/* ---- errors ------------------------------------------------------------------ */
int jfail(jctx *c, const jnode *at, const char *fmt, ...) {
    if (c->failed) return -1;
    c->failed = 1;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    if (at)
        q35_fail(c->err, Q35_ERR_FORMAT, "%s:%d: %s", c->t->name, jinja_line(c->t->src, at->pos), msg);
    else
        q35_fail(c->err, Q35_ERR_FORMAT, "%s: %s", c->t->name, msg);
    return -1;
}

int jnomem(jctx *c) {
    if (c->failed) return -1;
    if (c->lim.max_memory && c->a.used + CHUNK >= c->lim.max_memory) {
        jfail(c, NULL, "rendering needs more than %zu MiB of memory (the limit): a loop without end?",
              c->lim.max_memory >> 20);
        c->err->code = Q35_ERR_ARG;
    } else {
        jfail(c, NULL, "out of memory");
        c->err->code = Q35_ERR_NOMEM;
    }
    return -1;
}

/* ---- values -------------------------------------------------------------------- */
jv *jv_new(jctx *c, int kind) {
    jv *v = ja_alloc(&c->a, sizeof *v);
    if (!v) {
        jnomem(c);
        return NULL;
    }
    memset(v, 0, sizeof *v);
    v->kind = kind;
    return v;
}

jv *jv_num(jctx *c, double x, int is_int) {
    jv *v = jv_new(c, is_int ? V_INT : V_FLOAT);
    if (v) v->u.num = x;
    return v;
}

jv *jv_str(jctx *c, jstr s) {
    jv *v = jv_new(c, V_STR);
    if (v) v->u.s = s;
    return v;
}

jv *jv_strc(jctx *c, const char *s) {
    size_t n = strlen(s);
    char *p = ja_alloc(&c->a, n + 1);
    if (!p) {
        jnomem(c);
        return NULL;
    }
    memcpy(p, s, n + 1);
    return jv_str(c, (jstr){p, n});
}

jv *jv_array(jctx *c, int kind, int n) {
    jv *v = jv_new(c, kind);
    if (!v) return NULL;
    if (n > 0) {
        v->u.arr.items = ja_alloc(&c->a, (size_t)n * sizeof(jv *));
        if (!v->u.arr.items) {
            jnomem(c);
            return NULL;
        }
    }
    v->u.arr.n = n;
    return v;
}

jv *jv_bool(jctx *c, int b) { return b ? c->vtrue : c->vfalse; }

jv *jv_fn(jctx *c, int id, jv *self) {
    jv *v = jv_new(c, V_FUNC);
    if (v) {
        v->u.fn.id = id;
        v->u.fn.self = self;
    }
    return v;
}

static uint64_t hash_str(jstr s) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < s.n; i++) h = (h ^ (unsigned char)s.p[i]) * 1099511628211ull;
    return h;
}

static int map_find(const jmap *m, jstr key) {
    if (m->index) {
        size_t mask = (size_t)m->index_cap - 1;
        for (size_t h = hash_str(key) & mask;; h = (h + 1) & mask) {
            int i = m->index[h];
            if (i < 0) return -1;
            if (js_eq(m->keys[i], key)) return i;
        }
    }
    for (int i = 0; i < m->n; i++)
        if (js_eq(m->keys[i], key)) return i;
    return -1;
}

static int map_reindex(jctx *c, jmap *m) {
    int cap = 16;
    while (cap < 2 * m->cap) cap *= 2;
    int *idx = ja_alloc(&c->a, (size_t)cap * sizeof(int));
    if (!idx) return jnomem(c);
    for (int i = 0; i < cap; i++) idx[i] = -1;
    size_t mask = (size_t)cap - 1;
    for (int i = 0; i < m->n; i++) {
        size_t h = hash_str(m->keys[i]) & mask;
        while (idx[h] >= 0) h = (h + 1) & mask;
        idx[h] = i;
    }
    m->index = idx;
    m->index_cap = cap;
    return 0;
}

int jmap_set(jctx *c, jmap *m, jstr key, jv *v) {
    int i = map_find(m, key);
    if (i >= 0) {
        m->vals[i] = v;
        return 0;
    }
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 4;
        jstr *k = ja_alloc(&c->a, (size_t)cap * sizeof *k);
        jv **vs = ja_alloc(&c->a, (size_t)cap * sizeof *vs);
        if (!k || !vs) return jnomem(c);
        if (m->n) {
            memcpy(k, m->keys, (size_t)m->n * sizeof *k);
            memcpy(vs, m->vals, (size_t)m->n * sizeof *vs);
        }
        m->keys = k;
        m->vals = vs;
        m->cap = cap;
        m->index = NULL;
    }
    m->keys[m->n] = key;
    m->vals[m->n] = v;
    m->n++;
    if (m->n > 16) {
        if (!m->index) return map_reindex(c, m);
        size_t mask = (size_t)m->index_cap - 1, h = hash_str(key) & mask;
        while (m->index[h] >= 0) h = (h + 1) & mask;
        m->index[h] = m->n - 1;
    }
    return 0;
}

int jmap_reserve(jctx *c, jmap *m, int n) {
    if (m->n || m->cap >= n) return 0;
    m->keys = ja_alloc(&c->a, (size_t)n * sizeof *m->keys);
    m->vals = ja_alloc(&c->a, (size_t)n * sizeof *m->vals);
    if (!m->keys || !m->vals) return jnomem(c);
    m->cap = n;
    return 0;
}

jv *jmap_get(const jmap *m, jstr key) {
    int i = map_find(m, key);
    return i < 0 ? NULL : m->vals[i];
}

int jmap_copy(jctx *c, jmap *dst, const jmap *src) {
    memset(dst, 0, sizeof *dst);
    for (int i = 0; i < src->n; i++)
        if (jmap_set(c, dst, src->keys[i], src->vals[i])) return -1;
    return 0;
}

int jv_is_array(const jv *v) { return v->kind == V_ARRAY || v->kind == V_TUPLE; }
int jv_is_object(const jv *v) { return v->kind == V_OBJECT || v->kind == V_KWARGS; }
int jv_is_container(const jv *v) { return jv_is_object(v) || v->kind == V_NAMESPACE; }
int jv_is_number(const jv *v) { return v->kind == V_INT || v->kind == V_FLOAT; }

int jv_truthy(const jv *v) {
    switch (v->kind) {
    case V_BOOL: return v->u.b;
    case V_INT:
    case V_FLOAT: return v->u.num != 0 && !isnan(v->u.num);
    case V_STR: return v->u.s.n > 0;
    case V_ARRAY:
    case V_TUPLE: return v->u.arr.n > 0;
    case V_OBJECT:
    case V_KWARGS: return v->u.map.n > 0;
    case V_NAMESPACE:
    case V_FUNC: return 1;
    default: return 0;
    }
}

const char *jv_type_name(const jv *v) {
    static const char *const names[] = {
        "UndefinedValue", "NullValue", "BooleanValue", "IntegerValue", "FloatValue", "StringValue",
        "ArrayValue", "TupleValue", "ObjectValue", "KeywordArgumentsValue", "NamespaceValue",
        "FunctionValue"};
    return names[v->kind];
}

/* ---- numbers as JavaScript prints them ------------------------------------------ */
void js_num(double x, char *buf) {
    if (isnan(x)) { strcpy(buf, "NaN"); return; }
    if (isinf(x)) { strcpy(buf, x < 0 ? "-Infinity" : "Infinity"); return; }
    if (x == 0) { strcpy(buf, "0"); return; }
    char *w = buf;
    if (x < 0) {
        *w++ = '-';
        x = -x;
    }
    char tmp[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
        if (strtod(tmp, NULL) == x) break;
    }
    /* tmp: d[.ddd]e±XX */
    char digits[24];
    int k = 0;
    const char *q = tmp;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9') digits[k++] = *q;
    int e = atoi(q + 1);
    while (k > 1 && digits[k - 1] == '0') k--;
    digits[k] = '\0';
    int n = e + 1;
    if (k <= n && n <= 21) {
        memcpy(w, digits, (size_t)k);
        w += k;
        for (int i = k; i < n; i++) *w++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(w, digits, (size_t)n);
        w += n;
        *w++ = '.';
        memcpy(w, digits + n, (size_t)(k - n));
        w += k - n;
    } else if (-6 < n && n <= 0) {
        *w++ = '0';
        *w++ = '.';
        for (int i = 0; i < -n; i++) *w++ = '0';
        memcpy(w, digits, (size_t)k);
        w += k;
    } else {
        *w++ = digits[0];
        if (k > 1) {
            *w++ = '.';
            memcpy(w, digits + 1, (size_t)(k - 1));
            w += k - 1;
        }
        w += sprintf(w, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    *w = '\0';
}

/* FloatValue.toString: integral values keep ".0" */
static void float_str(double x, char *buf) {
    if (x == 0 && signbit(x)) strcpy(buf, "-0.0");
    else if (isfinite(x) && fmod(x, 1.0) == 0) {
        if (fabs(x) >= 1e21) js_num(x, buf);
        else snprintf(buf, 40, "%.1f", x);
    } else js_num(x, buf);
}

/* ---- JSON ------------------------------------------------------------------------- */
static void add_u16_escape(jbuf *b, unsigned u) {
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\', 'u', hex[(u >> 12) & 15], hex[(u >> 8) & 15], hex[(u >> 4) & 15], hex[u & 15]};
    jb_add(b, e, 6);
}

static void json_string(jbuf *out, jstr s, int ascii) {
    jb_addch(out, '"');
    size_t run = 0; /* start of bytes copied as they are */
    for (size_t i = 0; i < s.n;) {
        unsigned char ch = (unsigned char)s.p[i];
        const char *esc = NULL;
        if (ch == '"') esc = "\\\"";
        else if (ch == '\\') esc = "\\\\";
        else if (ch == '\b') esc = "\\b";
        else if (ch == '\f') esc = "\\f";
        else if (ch == '\n') esc = "\\n";
        else if (ch == '\r') esc = "\\r";
        else if (ch == '\t') esc = "\\t";
        if (esc || ch < 0x20 || (ascii && ch >= 0x7f)) {
            jb_add(out, s.p + run, i - run);
            size_t at = i;
            if (esc) {
                jb_addc(out, esc);
                i++;
            } else if (ch < 0x20) {
                add_u16_escape(out, ch);
                i++;
            } else {
                uint32_t cp = u8_next(s.p, s.n, &i);
                if (cp >= 0x10000) {
                    cp -= 0x10000;
                    add_u16_escape(out, 0xD800 + (cp >> 10));
                    add_u16_escape(out, 0xDC00 + (cp & 0x3FF));
                } else add_u16_escape(out, cp);
            }
            (void)at;
            run = i;
        } else i++;
    }
    jb_add(out, s.p + run, s.n - run);
    jb_addch(out, '"');
}

void js_json_string(jbuf *out, jstr s) { json_string(out, s, 0); }

/* localeCompare, approximated: case-insensitive, then lower case first */
static int locale_cmp(jstr a, jstr b) {
    size_t n = a.n < b.n ? a.n : b.n;
    for (size_t i = 0; i < n; i++) {
        int x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];
        int lx = x >= 'A' && x <= 'Z' ? x + 32 : x, ly = y >= 'A' && y <= 'Z' ? y + 32 : y;
        if (lx != ly) return lx < ly ? -1 : 1;
    }
    if (a.n != b.n) return a.n < b.n ? -1 : 1;
    int r = memcmp(a.p, b.p, n);
    return r < 0 ? 1 : r > 0 ? -1 : 0;
}

static void pad(jbuf *out, int indent, int depth) {
    jb_addch(out, '\n');
    for (int i = 0; i < indent * depth; i++) jb_addch(out, ' ');
}

int jv_json(jctx *c, const jv *v, const jjson_opts *o, int depth, jbuf *out, const jnode *at) {
    if (++c->depth > 1000) return jfail(c, at, "tojson: nesting deeper than 1000");
    jstr isep = o->have_seps ? o->item_sep : o->indent > 0 ? JSTR(",") : JSTR(", ");
    jstr ksep = o->have_seps ? o->key_sep : JSTR(": ");
    char num[48];
    int rc = 0;
    switch (v->kind) {
    case V_NULL: jb_addc(out, "null"); break;
    case V_UNDEF: jb_addc(out, o->undef_null ? "null" : "undefined"); break;
    case V_BOOL: jb_addc(out, v->u.b ? "true" : "false"); break;
    case V_INT:
    case V_FLOAT:
        if (isfinite(v->u.num)) js_num(v->u.num, num);
        else strcpy(num, "null");
        jb_addc(out, num);
        break;
    case V_STR: json_string(out, v->u.s, o->ensure_ascii); break;
    case V_ARRAY:
        jb_addch(out, '[');
        for (int i = 0; i < v->u.arr.n && !rc; i++) {
            if (i) jb_adds(out, isep);
            if (o->indent > 0) pad(out, o->indent, depth + 1);
            rc = jv_json(c, v->u.arr.items[i], o, depth + 1, out, at);
        }
        if (o->indent > 0 && v->u.arr.n > 0) pad(out, o->indent, depth);
        jb_addch(out, ']');
        break;
    case V_OBJECT:
    case V_NAMESPACE: {
        const jmap *m = &v->u.map;
        int *order = NULL;
        if (o->sort_keys && m->n > 1) {
            order = ja_alloc(&c->a, (size_t)m->n * sizeof(int));
            if (!order) return jnomem(c);
            for (int i = 0; i < m->n; i++) { /* insertion sort: stable */
                int j = i;
                while (j > 0 && locale_cmp(m->keys[order[j - 1]], m->keys[i]) > 0) {
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = i;
            }
        }
        jb_addch(out, '{');
        for (int k = 0; k < m->n && !rc; k++) {
            int i = order ? order[k] : k;
            if (k) jb_adds(out, isep);
            if (o->indent > 0) pad(out, o->indent, depth + 1);
            json_string(out, m->keys[i], o->ensure_ascii);
            jb_adds(out, ksep);
            rc = jv_json(c, m->vals[i], o, depth + 1, out, at);
        }
        if (o->indent > 0 && m->n > 0) pad(out, o->indent, depth);
        jb_addch(out, '}');
        break;
    }
    default: rc = jfail(c, at, "Cannot convert to JSON: %s", jv_type_name(v));
    }
    c->depth--;
    if (!rc && out->failed) rc = out->failed == 2 ? jfail(c, at, "output longer than the limit") : jnomem(c);
    return rc;
}

/* ---- printing --------------------------------------------------------------------- */
int jv_render(jctx *c, const jv *v, jbuf *out, const jnode *at) {
    char num[48];
    switch (v->kind) {
    case V_INT: js_num(v->u.num, num); jb_addc(out, num); return 0;
    case V_FLOAT: float_str(v->u.num, num); jb_addc(out, num); return 0;
    case V_BOOL: jb_addc(out, v->u.b ? "true" : "false"); return 0;
    case V_STR: jb_adds(out, v->u.s); return 0;
    case V_NULL:
    case V_UNDEF: jb_addc(out, "undefined"); return 0;
    case V_FUNC: return jfail(c, at, "cannot print a function");
    default: {
        jjson_opts o = {0};
        o.indent = -1;
        return jv_json(c, v, &o, 0, out, at);
    }
    }
}

/* Array.prototype.toString: items joined by ",", each by its toString */
static int array_raw(jctx *c, const jv *v, jbuf *out, const jnode *at) {
    for (int i = 0; i < v->u.arr.n; i++) {
        if (i) jb_addch(out, ',');
        if (jv_render(c, v->u.arr.items[i], out, at)) return -1;
    }
    return 0;
}

int jv_raw(jctx *c, const jv *v, jbuf *out, const jnode *at) {
    char num[48];
    switch (v->kind) {
    case V_INT:
    case V_FLOAT: js_num(v->u.num, num); jb_addc(out, num); return 0;
    case V_BOOL: jb_addc(out, v->u.b ? "true" : "false"); return 0;
    case V_STR: jb_adds(out, v->u.s); return 0;
    case V_ARRAY:
    case V_TUPLE: return array_raw(c, v, out, at);
    case V_OBJECT:
    case V_KWARGS:
    case V_NAMESPACE: jb_addc(out, "[object Map]"); return 0;
    case V_FUNC: return jfail(c, at, "cannot convert a function to a string");
    default: return jfail(c, at, "Cannot read properties of undefined (reading 'toString')");
    }
}

/* ---- JSON in ------------------------------------------------------------------------ */
/* ECMAScript array index: "0" or [1-9][0-9]* below 2^32 - 1 */
static int array_index(const char *k, double *out) {
    size_t n = strlen(k);
    if (n == 0 || n > 10 || (n > 1 && k[0] == '0')) return 0;
    double v = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9') return 0;
        v = v * 10 + (k[i] - '0');
    }
    if (v >= 4294967295.0) return 0;
    *out = v;
    return 1;
}

jv *jv_from_json(jctx *c, const cJSON *j) {
    if (++c->depth > 1000) {
        jfail(c, NULL, "the context nests deeper than 1000");
        return NULL;
    }
    jv *v = NULL;
    if (cJSON_IsNull(j)) v = c->null;
    else if (cJSON_IsBool(j)) v = jv_bool(c, cJSON_IsTrue(j));
    else if (cJSON_IsNumber(j)) {
        double x = j->valuedouble;
        v = jv_num(c, x, isfinite(x) && x == trunc(x));
    } else if (cJSON_IsString(j)) {
        jstr s;
        if (u8_sanitize(&c->a, j->valuestring, strlen(j->valuestring), &s)) jnomem(c);
        else v = jv_str(c, s);
    } else if (cJSON_IsArray(j)) {
        int n = cJSON_GetArraySize(j), i = 0;
        v = jv_array(c, V_ARRAY, n);
        for (const cJSON *e = j->child; v && e && i < n; e = e->next, i++)
            if (!(v->u.arr.items[i] = jv_from_json(c, e))) v = NULL;
    } else if (cJSON_IsObject(j)) {
        v = jv_new(c, V_OBJECT);
        /* array-index keys first, ascending; then the others in order */
        int n_idx = 0;
        for (const cJSON *e = j->child; e; e = e->next) {
            double d;
            if (e->string && array_index(e->string, &d)) n_idx++;
        }
        if (v && n_idx) {
            const cJSON **idx = ja_alloc(&c->a, (size_t)n_idx * sizeof *idx);
            double *key = ja_alloc(&c->a, (size_t)n_idx * sizeof *key);
            if (!idx || !key) {
                jnomem(c);
                v = NULL;
            }
            int m = 0;
            for (const cJSON *e = j->child; v && e; e = e->next) {
                double d;
                if (!e->string || !array_index(e->string, &d)) continue;
                int w = m++;
                while (w > 0 && key[w - 1] > d) {
                    key[w] = key[w - 1];
                    idx[w] = idx[w - 1];
                    w--;
                }
                key[w] = d;
                idx[w] = e;
            }
            for (int i = 0; v && i < m; i++) {
                jv *x = jv_from_json(c, idx[i]);
                jstr k;
                if (!x) v = NULL;
                else if (u8_sanitize(&c->a, idx[i]->string, strlen(idx[i]->string), &k) ||
                         jmap_set(c, &v->u.map, k, x))
                    v = NULL;
            }
        }
        for (const cJSON *e = j->child; v && e; e = e->next) {
            double d;
            if (!e->string || array_index(e->string, &d)) continue;
            jv *x = jv_from_json(c, e);
            jstr k;
            if (!x) v = NULL;
            else if (u8_sanitize(&c->a, e->string, strlen(e->string), &k)) {
                jnomem(c);
                v = NULL;
            } else if (jmap_set(c, &v->u.map, k, x)) v = NULL;
        }
    } else jfail(c, NULL, "the context holds a value that is not JSON");
    c->depth--;
    return v;
}

/* ---- equality and order ------------------------------------------------------------- */
/* JavaScript's StringToNumber */
static double js_str_to_num(jstr s) {
    size_t b = 0, e = s.n;
    while (b < e) {
        size_t i = b;
        if (!js_space(u8_next(s.p, s.n, &i))) break;
        b = i;
    }
    while (e > b) {
        size_t st;
        if (!js_space(u8_prev(s.p, e, &st))) break;
        e = st;
    }
    if (b == e) return 0;
    char buf[64];
    size_t n = e - b;
    if (n >= sizeof buf) return NAN; /* too long to be a sensible number */
    memcpy(buf, s.p + b, n);
    buf[n] = '\0';
    const char *p = buf;
    if (n > 2 && p[0] == '0' && (p[1] | 32) != 'e' && strchr("xXoObB", p[1])) {
        int base = (p[1] | 32) == 'x' ? 16 : (p[1] | 32) == 'o' ? 8 : 2;
        double v = 0;
        for (p += 2; *p; p++) {
            int d = *p >= '0' && *p <= '9' ? *p - '0' : (*p | 32) >= 'a' && (*p | 32) <= 'f' ? (*p | 32) - 'a' + 10 : 99;
            if (d >= base) return NAN;
            v = v * base + d;
        }
        return v;
    }
    const char *q = p;
    int neg = 0;
    if (*q == '+' || *q == '-') neg = *q++ == '-';
    if (!strcmp(q, "Infinity")) return neg ? -INFINITY : INFINITY;
    /* digits [. digits] [e[+-]digits] only */
    const char *r = q;
    int digits = 0;
    while (*r >= '0' && *r <= '9') { r++; digits++; }
    if (*r == '.') {
        r++;
        while (*r >= '0' && *r <= '9') { r++; digits++; }
    }
    if (!digits) return NAN;
    if (*r == 'e' || *r == 'E') {
        r++;
        if (*r == '+' || *r == '-') r++;
        if (!(*r >= '0' && *r <= '9')) return NAN;
        while (*r >= '0' && *r <= '9') r++;
    }
    if (*r) return NAN;
    return strtod(p, NULL);
}

/* the primitive a value's .value is in JavaScript, for == */
enum { P_UNDEF, P_NUM, P_STR, P_BOOL, P_OBJ };

static int prim_kind(const jv *v) {
    switch (v->kind) {
    case V_UNDEF:
    case V_NULL: return P_UNDEF;
    case V_INT:
    case V_FLOAT: return P_NUM;
    case V_STR: return P_STR;
    case V_BOOL: return P_BOOL;
    default: return P_OBJ;
    }
}

int jv_strict_eq(const jv *a, const jv *b) {
    int ka = prim_kind(a), kb = prim_kind(b);
    if (ka != kb) return 0;
    switch (ka) {
    case P_UNDEF: return 1;
    case P_NUM: return a->u.num == b->u.num;
    case P_STR: return js_eq(a->u.s, b->u.s);
    case P_BOOL: return a->u.b == b->u.b;
    default: return a == b;
    }
}

int jv_loose_eq(jctx *c, const jv *a, const jv *b, const jnode *at, int *res) {
    int ka = prim_kind(a), kb = prim_kind(b);
    if (ka == kb) {
        *res = jv_strict_eq(a, b);
        return 0;
    }
    if (ka == P_UNDEF || kb == P_UNDEF) {
        *res = 0;
        return 0;
    }
    /* an object against a primitive: the object's string (its toString) */
    if (ka == P_OBJ || kb == P_OBJ) {
        const jv *o = ka == P_OBJ ? a : b, *p = ka == P_OBJ ? b : a;
        jbuf s;
        jb_init(&s, &c->a, c->lim.max_output);
        if (jv_raw(c, o, &s, at)) return -1;
        if (s.failed) return jnomem(c);
        jv tmp = {.kind = V_STR};
        tmp.u.s = jb_str(&s);
        return jv_loose_eq(c, &tmp, p, at, res);
    }
    double x = ka == P_NUM ? a->u.num : ka == P_BOOL ? a->u.b : js_str_to_num(a->u.s);
    double y = kb == P_NUM ? b->u.num : kb == P_BOOL ? b->u.b : js_str_to_num(b->u.s);
    *res = x == y;
    return 0;
}

/* UTF-16 order: code points, with those above U+FFFF as their surrogates */
int js_strcmp(jstr a, jstr b) {
    size_t i = 0, j = 0;
    while (i < a.n && j < b.n) {
        uint32_t x = u8_next(a.p, a.n, &i), y = u8_next(b.p, b.n, &j);
        if (x == y) continue;
        uint32_t ux = x >= 0x10000 ? 0xD800 + ((x - 0x10000) >> 10) : x;
        uint32_t uy = y >= 0x10000 ? 0xD800 + ((y - 0x10000) >> 10) : y;
        if (ux == uy) { /* same high surrogate: the low ones decide */
            ux = 0xDC00 + ((x - 0x10000) & 0x3FF);
            uy = 0xDC00 + ((y - 0x10000) & 0x3FF);
        }
        return ux < uy ? -1 : 1;
    }
    return i < a.n ? 1 : j < b.n ? -1 : 0;
}

static jstr map_case(jctx *c, jstr s, int upper) {
    char *p = ja_alloc(&c->a, s.n + 1);
    if (!p) {
        jnomem(c);
        return s;
    }
    for (size_t i = 0; i < s.n; i++) {
        char ch = s.p[i];
        if (upper && ch >= 'a' && ch <= 'z') ch = (char)(ch - 32);
        if (!upper && ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32);
        p[i] = ch;
    }
    p[s.n] = '\0';
    return (jstr){p, s.n};
}

jstr js_lower(jctx *c, jstr s) { return map_case(c, s, 0); }
jstr js_upper(jctx *c, jstr s) { return map_case(c, s, 1); }

int jv_compare(jctx *c, const jv *a, const jv *b, int case_sensitive, const jnode *at, int *res) {
    if (a->kind == V_NULL && b->kind == V_NULL) { *res = 0; return 0; }
    if (a->kind == V_NULL || b->kind == V_NULL)
        return jfail(c, at, "Cannot compare %s with %s", jv_type_name(a), jv_type_name(b));
    if (a->kind == V_UNDEF && b->kind == V_UNDEF) { *res = 0; return 0; }
    if (a->kind == V_UNDEF || b->kind == V_UNDEF)
        return jfail(c, at, "Cannot compare %s with %s", jv_type_name(a), jv_type_name(b));
    int na = jv_is_number(a) || a->kind == V_BOOL, nb = jv_is_number(b) || b->kind == V_BOOL;
    if (na && nb) {
        double x = a->kind == V_BOOL ? a->u.b : a->u.num, y = b->kind == V_BOOL ? b->u.b : b->u.num;
        *res = x < y ? -1 : x > y ? 1 : 0;
        return 0;
    }
    if (a->kind != b->kind)
        return jfail(c, at, "Cannot compare different types: %s and %s", jv_type_name(a), jv_type_name(b));
    if (a->kind != V_STR) return jfail(c, at, "Cannot compare type: %s", jv_type_name(a));
    jstr x = a->u.s, y = b->u.s;
    if (!case_sensitive) {
        x = js_lower(c, x);
        y = js_lower(c, y);
        if (c->failed) return -1;
    }
    *res = js_strcmp(x, y);
    return 0;
}
