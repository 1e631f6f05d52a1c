/* jinja_builtin.c — the filters, tests, methods and global functions of
 * @huggingface/jinja 0.5.13, each with the reference's argument handling
 * and errors: what it lacks (e.g. str.format, |count) fails here as there.
 * Case mapping (upper, lower, capitalize) maps ASCII letters only, where
 * JavaScript maps all of Unicode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/jinja_internal.h"

#define NAME_ARGS(s) (int)((s).n < 60 ? (s).n : 60), (s).p

static jv *fail_null(jctx *c, const jnode *at, const char *msg) {
    jfail(c, at, "%s", msg);
    return NULL;
}

static jv *str_out(jctx *c, jbuf *b, const jnode *at) {
    if (b->failed == 2) {
        jfail(c, at, "the output grew beyond %zu bytes (the limit)", c->lim.max_output);
        c->err->code = Q35_ERR_ARG;
        return NULL;
    }
    if (b->failed) {
        jnomem(c);
        return NULL;
    }
    return jv_str(c, jb_str(b));
}

static jstr trim(jstr s, int left, int right) {
    size_t b = 0, e = s.n;
    while (left && b < e) {
        size_t i = b;
        if (!js_space(u8_next(s.p, s.n, &i))) break;
        b = i;
    }
    while (right && e > b) {
        size_t st;
        if (!js_space(u8_prev(s.p, e, &st))) break;
        e = st;
    }
    return (jstr){s.p + b, e - b};
}

/* parseInt(s, 10) and parseFloat(s): NAN when nothing parses */
static double js_parse_int(jstr s) {
    s = trim(s, 1, 0);
    size_t i = 0;
    int neg = 0;
    if (i < s.n && (s.p[i] == '+' || s.p[i] == '-')) neg = s.p[i++] == '-';
    double v = 0;
    size_t start = i;
    while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9') v = v * 10 + (s.p[i++] - '0');
    if (i == start) return NAN;
    if (i - start > 15) { /* long: let strtod round it */
        char buf[400];
        size_t n = i - start < sizeof buf - 1 ? i - start : sizeof buf - 1;
        memcpy(buf, s.p + start, n);
        buf[n] = '\0';
        v = n == i - start ? strtod(buf, NULL) : INFINITY;
    }
    return neg ? -v : v;
}

static double js_parse_float(jstr s) {
    s = trim(s, 1, 0);
    size_t i = 0;
    if (i < s.n && (s.p[i] == '+' || s.p[i] == '-')) i++;
    if (s.n - i >= 8 && !memcmp(s.p + i, "Infinity", 8)) return s.p[0] == '-' ? -INFINITY : INFINITY;
    size_t digits = 0;
    while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9') { i++; digits++; }
    if (i < s.n && s.p[i] == '.') {
        i++;
        while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9') { i++; digits++; }
    }
    if (!digits) return NAN;
    if (i < s.n && (s.p[i] == 'e' || s.p[i] == 'E')) {
        size_t j = i + 1;
        if (j < s.n && (s.p[j] == '+' || s.p[j] == '-')) j++;
        if (j < s.n && s.p[j] >= '0' && s.p[j] <= '9') {
            while (j < s.n && s.p[j] >= '0' && s.p[j] <= '9') j++;
            i = j;
        }
    }
    char buf[512];
    if (i >= sizeof buf) return NAN;
    memcpy(buf, s.p, i);
    buf[i] = '\0';
    return strtod(buf, NULL);
}

/* an element's part of Array.prototype.join over the items' .value */
static int join_elem(jctx *c, const jv *v, jbuf *out, const jnode *at) {
    if (v->kind == V_NULL || v->kind == V_UNDEF) return 0;
    return jv_raw(c, v, out, at);
}

static jv *to_json(jctx *c, jv *v, const jjson_opts *o, const jnode *at) {
    jbuf b;
    jb_init(&b, &c->a, c->lim.max_output);
    if (jv_json(c, v, o, 0, &b, at)) return NULL;
    return str_out(c, &b, at);
}

/* stable merge sort with a comparator that may fail */
typedef struct sorter {
    jctx *c;
    const jnode *at;
    int case_sensitive, reverse;
    const jv *attr;  /* NULL: the items themselves */
    int by_value;    /* dictsort: compare pair[1] instead of pair[0] */
    int dict;
} sorter;

static jv *attribute(jctx *c, jv *item, jstr path);

static int sort_cmp(sorter *S, jv *a, jv *b, int *res) {
    jv *x = a, *y = b;
    if (S->dict) {
        x = a->u.arr.items[S->by_value];
        y = b->u.arr.items[S->by_value];
    } else if (S->attr) {
        jstr path;
        char num[48];
        if (S->attr->kind == V_INT) {
            js_num(S->attr->u.num, num);
            path = (jstr){num, strlen(num)};
        } else path = S->attr->u.s;
        if (!(x = attribute(S->c, a, path)) || !(y = attribute(S->c, b, path))) return -1;
    }
    if (jv_compare(S->c, x, y, S->case_sensitive, S->at, res)) return -1;
    if (S->reverse) *res = -*res;
    return 0;
}

static int merge_sort(sorter *S, jv **v, jv **tmp, int n) {
    if (n < 2) return 0;
    int h = n / 2;
    if (merge_sort(S, v, tmp, h) || merge_sort(S, v + h, tmp, n - h)) return -1;
    int i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int r;
        S->c->steps++;
        if (sort_cmp(S, v[j], v[i], &r)) return -1;
        tmp[k++] = r < 0 ? v[j++] : v[i++];
    }
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, (size_t)n * sizeof *v);
    return 0;
}

static jv *sorted(jctx *c, jv *arr, sorter *S) {
    int n = arr->u.arr.n;
    jv *r = jv_array(c, V_ARRAY, n);
    jv **tmp = n ? ja_alloc(&c->a, (size_t)n * sizeof *tmp) : NULL;
    if (!r || (n && !tmp)) {
        jnomem(c);
        return NULL;
    }
    for (int i = 0; i < n; i++) r->u.arr.items[i] = arr->u.arr.items[i];
    if (merge_sort(S, r->u.arr.items, tmp, n)) return NULL;
    return r;
}

/* getAttributeValue: a dotted path through mappings and list indices */
static jv *attribute(jctx *c, jv *item, jstr path) {
    jv *v = item;
    size_t b = 0;
    for (;;) {
        size_t e = b;
        while (e < path.n && path.p[e] != '.') e++;
        jstr part = {path.p + b, e - b};
        if (jv_is_container(v)) {
            jv *x = jmap_get(&v->u.map, part);
            v = x ? x : c->undef;
        } else if (jv_is_array(v)) {
            double i = js_parse_int(part);
            if (!isnan(i) && i >= 0 && i < v->u.arr.n) v = v->u.arr.items[(int)i];
            else return c->undef;
        } else return c->undef;
        if (e >= path.n) break;
        b = e + 1;
    }
    return v;
}

static jv *pairs(jctx *c, const jmap *m, int what) { /* 0 items, 1 keys, 2 values */
    jv *r = jv_array(c, V_ARRAY, m->n);
    if (!r) return NULL;
    for (int i = 0; i < m->n; i++) {
        jv *k = what != 2 ? jv_str(c, m->keys[i]) : NULL;
        if (what == 0) {
            jv *p = jv_array(c, V_ARRAY, 2);
            if (!p || !k) return NULL;
            p->u.arr.items[0] = k;
            p->u.arr.items[1] = m->vals[i];
            r->u.arr.items[i] = p;
        } else if (what == 1) {
            if (!k) return NULL;
            r->u.arr.items[i] = k;
        } else r->u.arr.items[i] = m->vals[i];
    }
    return r;
}

static jv *kw_get(const jmap *kw, const char *name) {
    return kw ? jmap_get(kw, (jstr){name, strlen(name)}) : NULL;
}

/* ---- string methods ------------------------------------------------------------------ */
static jv *title(jctx *c, jstr s) {
    char *p = ja_alloc(&c->a, s.n + 1);
    if (!p) {
        jnomem(c);
        return NULL;
    }
    int prev_word = 0;
    for (size_t i = 0; i < s.n; i++) {
        char ch = s.p[i];
        int word = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
        p[i] = word && !prev_word && ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
        prev_word = word;
    }
    p[s.n] = '\0';
    return jv_str(c, (jstr){p, s.n});
}

static int has_prefix(jstr s, jstr p, int suffix) {
    if (p.n > s.n) return 0;
    return p.n == 0 || !memcmp(suffix ? s.p + s.n - p.n : s.p, p.p, p.n);
}

static jv *affix(jctx *c, jstr s, jv **args, int n, int suffix, const jnode *at) {
    const char *name = suffix ? "endswith" : "startswith";
    char msg[120];
    if (n == 0) {
        snprintf(msg, sizeof msg, "%s() requires at least one argument", name);
        return fail_null(c, at, msg);
    }
    if (args[0]->kind == V_STR) return jv_bool(c, has_prefix(s, args[0]->u.s, suffix));
    if (jv_is_array(args[0])) {
        for (int i = 0; i < args[0]->u.arr.n; i++) {
            jv *x = args[0]->u.arr.items[i];
            if (x->kind != V_STR) {
                snprintf(msg, sizeof msg, "%s() tuple elements must be strings", name);
                return fail_null(c, at, msg);
            }
            if (has_prefix(s, x->u.s, suffix)) return c->vtrue;
        }
        return c->vfalse;
    }
    snprintf(msg, sizeof msg, "%s() argument must be a string or tuple of strings", name);
    return fail_null(c, at, msg);
}

typedef struct strlist {
    jstr *v;
    int n, cap;
} strlist;

static int sl_push(jctx *c, strlist *l, jstr s) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        jstr *v = ja_alloc(&c->a, (size_t)cap * sizeof *v);
        if (!v) return jnomem(c);
        if (l->n) memcpy(v, l->v, (size_t)l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    c->steps++;
    return 0;
}

static jv *split(jctx *c, jstr s, jv **args, int n, const jnode *at) {
    jv *sep = n > 0 ? args[0] : c->null;
    if (sep->kind != V_STR && sep->kind != V_NULL) return fail_null(c, at, "sep argument must be a string or null");
    jv *maxv = n > 1 ? args[1] : NULL;
    if (maxv && maxv->kind != V_INT) return fail_null(c, at, "maxsplit argument must be a number");
    double max = maxv ? maxv->u.num : -1;
    strlist parts = {0};
    if (sep->kind == V_NULL) {
        jstr t = trim(s, 1, 0);
        size_t i = 0;
        while (i < t.n) {
            size_t st = i;
            while (st < t.n) { /* next non-space */
                size_t k = st;
                if (!js_space(u8_next(t.p, t.n, &k))) break;
                st = k;
            }
            if (st >= t.n) break;
            size_t e = st;
            while (e < t.n) {
                size_t k = e;
                if (js_space(u8_next(t.p, t.n, &k))) break;
                e = k;
            }
            if (max >= 0 && parts.n >= max) {
                if (sl_push(c, &parts, (jstr){t.p + st, t.n - st})) return NULL;
                break;
            }
            if (sl_push(c, &parts, (jstr){t.p + st, e - st})) return NULL;
            i = e;
        }
    } else {
        jstr d = sep->u.s;
        if (d.n == 0) return fail_null(c, at, "empty separator");
        size_t b = 0;
        for (size_t i = 0; i + d.n <= s.n;) {
            if (!memcmp(s.p + i, d.p, d.n)) {
                if (sl_push(c, &parts, (jstr){s.p + b, i - b})) return NULL;
                i += d.n;
                b = i;
            } else i++;
        }
        if (sl_push(c, &parts, (jstr){s.p + b, s.n - b})) return NULL;
        if (max >= 0 && parts.n > max) { /* the rest joined back */
            int m = (int)max;
            jstr first = parts.v[m], last = parts.v[parts.n - 1];
            parts.v[m] = (jstr){first.p, (size_t)(last.p + last.n - first.p)};
            parts.n = m + 1;
        }
    }
    jv *r = jv_array(c, V_ARRAY, parts.n);
    if (!r) return NULL;
    for (int i = 0; i < parts.n; i++)
        if (!(r->u.arr.items[i] = jv_str(c, parts.v[i]))) return NULL;
    return r;
}

static jv *replace(jctx *c, jstr s, jv **args, int n, const jnode *at) {
    if (n < 2) return fail_null(c, at, "replace() requires at least two arguments");
    if (args[0]->kind != V_STR || args[1]->kind != V_STR) return fail_null(c, at, "replace() arguments must be strings");
    jv *count = c->null;
    if (n > 2) {
        if (args[2]->kind == V_KWARGS) {
            jv *x = kw_get(&args[2]->u.map, "count");
            count = x ? x : c->null;
        } else count = args[2];
    }
    if (count->kind != V_INT && count->kind != V_NULL)
        return fail_null(c, at, "replace() count argument must be a number or null");
    double left = count->kind == V_NULL || count->u.num < 0 ? INFINITY : count->u.num;
    jstr old = args[0]->u.s, new_ = args[1]->u.s;
    jbuf b;
    jb_init(&b, &c->a, c->lim.max_output);
    if (left == 0) return jv_str(c, s);
    if (old.n == 0) { /* between code points, and at both ends */
        size_t i = 0;
        for (;;) {
            if (left > 0) {
                jb_adds(&b, new_);
                left--;
            }
            if (i >= s.n) break;
            size_t st = i;
            u8_next(s.p, s.n, &i);
            jb_add(&b, s.p + st, i - st);
            c->steps++;
        }
        return str_out(c, &b, at);
    }
    size_t from = 0;
    for (size_t i = 0; i + old.n <= s.n;) {
        if (left > 0 && !memcmp(s.p + i, old.p, old.n)) {
            jb_add(&b, s.p + from, i - from);
            jb_adds(&b, new_);
            left--;
            i += old.n;
            from = i;
            c->steps++;
        } else i++;
    }
    jb_add(&b, s.p + from, s.n - from);
    return str_out(c, &b, at);
}

static jv *dictsort(jctx *c, jv *obj, jv **args, int n, const jnode *at) {
    const jmap *kw = NULL;
    jv *pos[3] = {NULL, NULL, NULL};
    int np = 0;
    for (int i = 0; i < n; i++) {
        if (args[i]->kind == V_KWARGS) kw = &args[i]->u.map;
        else if (np < 3) pos[np++] = args[i];
    }
    jv *cs = pos[0] ? pos[0] : kw_get(kw, "case_sensitive");
    jv *by = pos[1] ? pos[1] : kw_get(kw, "by");
    jv *rev = pos[2] ? pos[2] : kw_get(kw, "reverse");
    if (cs && cs->kind != V_BOOL) return fail_null(c, at, "case_sensitive must be a boolean");
    if (by && by->kind != V_STR) return fail_null(c, at, "by must be a string");
    if (by && !js_eqc(by->u.s, "key") && !js_eqc(by->u.s, "value"))
        return fail_null(c, at, "by must be either 'key' or 'value'");
    if (rev && rev->kind != V_BOOL) return fail_null(c, at, "reverse must be a boolean");
    jv *items = pairs(c, &obj->u.map, 0);
    if (!items) return NULL;
    sorter S = {c, at, cs && cs->u.b, rev && rev->u.b, NULL, by && js_eqc(by->u.s, "value"), 1};
    return sorted(c, items, &S);
}

static jv *range(jctx *c, jv **args, int n, const jnode *at) {
    if (n < 1 || n > 3) return fail_null(c, at, "range() takes 1 to 3 numbers");
    for (int i = 0; i < n; i++)
        if (!jv_is_number(args[i])) return fail_null(c, at, "range() arguments must be numbers");
    double start = args[0]->u.num, stop, stp = n > 2 ? args[2]->u.num : 1;
    if (n == 1) {
        stop = start;
        start = 0;
    } else stop = args[1]->u.num;
    if (stp == 0) return fail_null(c, at, "range() step must not be zero");
    if (isnan(start) || isnan(stop) || isnan(stp)) return jv_array(c, V_ARRAY, 0);
    double count = stp > 0 ? (stop > start ? ceil((stop - start) / stp) : 0)
                           : (stop < start ? ceil((start - stop) / -stp) : 0);
    if (count > (double)(c->lim.max_steps - (c->steps < c->lim.max_steps ? c->steps : c->lim.max_steps)) ||
        count > 1e8) {
        jfail(c, at, "range() of %.0f numbers: the template would run more than %llu steps (the limit)", count,
              (unsigned long long)c->lim.max_steps);
        c->err->code = Q35_ERR_ARG;
        return NULL;
    }
    c->steps += (uint64_t)count;
    jv **items = NULL;
    int k = 0, cap = 0;
    for (double i = start; stp > 0 ? i < stop : i > stop; i += stp) {
        if (k == cap) {
            int nc = cap ? 2 * cap : 16;
            jv **q = ja_alloc(&c->a, (size_t)nc * sizeof *q);
            if (!q) {
                jnomem(c);
                return NULL;
            }
            if (k) memcpy(q, items, (size_t)k * sizeof *q);
            items = q;
            cap = nc;
        }
        if (!(items[k++] = jv_num(c, i, i == trunc(i)))) return NULL;
        if (k > 100000000) break;
    }
    jv *r = jv_array(c, V_ARRAY, 0);
    if (!r) return NULL;
    r->u.arr.items = items;
    r->u.arr.n = k;
    return r;
}

static jv *strftime_now(jctx *c, jv **args, int n, const jnode *at) {
    if (n < 1 || args[0]->kind != V_STR) return fail_null(c, at, "strftime_now() needs a format string");
    static const char *const months[12] = {"January", "February", "March", "April", "May", "June", "July",
                                           "August", "September", "October", "November", "December"};
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    jstr f = args[0]->u.s;
    jbuf b;
    jb_init(&b, &c->a, c->lim.max_output);
    char num[16];
    for (size_t i = 0; i < f.n; i++) {
        if (f.p[i] != '%' || i + 1 >= f.n || !strchr("YmdbBHM%", f.p[i + 1]) || !f.p[i + 1]) {
            jb_addch(&b, f.p[i]);
            continue;
        }
        char k = f.p[++i];
        switch (k) {
        case 'Y': snprintf(num, sizeof num, "%d", tm.tm_year + 1900); jb_addc(&b, num); break;
        case 'm': snprintf(num, sizeof num, "%02d", tm.tm_mon + 1); jb_addc(&b, num); break;
        case 'd': snprintf(num, sizeof num, "%02d", tm.tm_mday); jb_addc(&b, num); break;
        case 'H': snprintf(num, sizeof num, "%02d", tm.tm_hour); jb_addc(&b, num); break;
        case 'M': snprintf(num, sizeof num, "%02d", tm.tm_min); jb_addc(&b, num); break;
        case 'b': jb_add(&b, months[tm.tm_mon], 3); break;
        case 'B': jb_addc(&b, months[tm.tm_mon]); break;
        default: jb_addch(&b, '%');
        }
    }
    return str_out(c, &b, at);
}

static jv *namespace_fn(jctx *c, jv **args, int n, const jnode *at) {
    const jmap *kw = NULL;
    if (n > 0 && args[n - 1]->kind == V_KWARGS) kw = &args[--n]->u.map;
    if (n > 1) {
        jfail(c, at, "namespace expected at most 1 argument, got %d", n);
        return NULL;
    }
    jv *ns = jv_new(c, V_NAMESPACE);
    if (!ns) return NULL;
    if (n == 1) {
        jv *src = args[0];
        if (jv_is_object(src)) {
            for (int i = 0; i < src->u.map.n; i++)
                if (jmap_set(c, &ns->u.map, src->u.map.keys[i], src->u.map.vals[i])) return NULL;
        } else if (jv_is_array(src)) {
            for (int i = 0; i < src->u.arr.n; i++) {
                jv *p = src->u.arr.items[i], *k = NULL, *v = NULL;
                if (jv_is_array(p) && p->u.arr.n == 2) {
                    k = p->u.arr.items[0];
                    v = p->u.arr.items[1];
                } else if (p->kind == V_STR) {
                    size_t a = 0, b;
                    if (p->u.s.n && (u8_next(p->u.s.p, p->u.s.n, &a), b = a, u8_next(p->u.s.p, p->u.s.n, &b), b == p->u.s.n) &&
                        a < p->u.s.n) {
                        k = jv_str(c, (jstr){p->u.s.p, a});
                        v = jv_str(c, (jstr){p->u.s.p + a, p->u.s.n - a});
                        if (!k || !v) return NULL;
                    }
                }
                if (!k) return fail_null(c, at, "namespace expected an object or an iterable of [key, value] pairs");
                if (k->kind != V_STR) return fail_null(c, at, "namespace keys must be strings");
                if (jmap_set(c, &ns->u.map, k->u.s, v)) return NULL;
            }
        } else {
            jfail(c, at, "'%s' object is not iterable", jv_type_name(src));
            return NULL;
        }
    }
    for (int i = 0; kw && i < kw->n; i++)
        if (jmap_set(c, &ns->u.map, kw->keys[i], kw->vals[i])) return NULL;
    return ns;
}

jv *jbuiltin_call(jctx *c, jv *fn, jv **args, int n, const jnode *at) {
    jv *self = fn->u.fn.self;
    switch (fn->u.fn.id) {
    case F_RAISE: {
        jbuf b;
        jb_init(&b, &c->a, 300);
        if (n > 0 && args[0]->kind != V_UNDEF && args[0]->kind != V_NULL && jv_raw(c, args[0], &b, at)) return NULL;
        jfail(c, at, "raise_exception: %.*s", (int)b.n, b.p ? b.p : "");
        c->err->code = Q35_ERR_ARG;
        return NULL;
    }
    case F_RANGE: return range(c, args, n, at);
    case F_STRFTIME: return strftime_now(c, args, n, at);
    case F_NAMESPACE: return namespace_fn(c, args, n, at);
    case M_UPPER: return jv_str(c, js_upper(c, self->u.s));
    case M_LOWER: return jv_str(c, js_lower(c, self->u.s));
    case M_STRIP: return jv_str(c, trim(self->u.s, 1, 1));
    case M_LSTRIP: return jv_str(c, trim(self->u.s, 1, 0));
    case M_RSTRIP: return jv_str(c, trim(self->u.s, 0, 1));
    case M_TITLE: return title(c, self->u.s);
    case M_CAPITALIZE: {
        jstr s = self->u.s;
        if (!s.n || s.p[0] < 'a' || s.p[0] > 'z') return jv_str(c, s);
        char *p = ja_alloc(&c->a, s.n + 1);
        if (!p) {
            jnomem(c);
            return NULL;
        }
        memcpy(p, s.p, s.n);
        p[0] = (char)(p[0] - 32);
        p[s.n] = '\0';
        return jv_str(c, (jstr){p, s.n});
    }
    case M_STARTSWITH: return affix(c, self->u.s, args, n, 0, at);
    case M_ENDSWITH: return affix(c, self->u.s, args, n, 1, at);
    case M_SPLIT: return split(c, self->u.s, args, n, at);
    case M_REPLACE: return replace(c, self->u.s, args, n, at);
    case M_GET: {
        if (n < 1 || args[0]->kind != V_STR) {
            jfail(c, at, "Object key must be a string: got %s", n < 1 ? "undefined" : jv_type_name(args[0]));
            return NULL;
        }
        jv *v = jmap_get(&self->u.map, args[0]->u.s);
        return v ? v : n > 1 ? args[1] : c->null;
    }
    case M_ITEMS: return pairs(c, &self->u.map, 0);
    case M_KEYS: return pairs(c, &self->u.map, 1);
    case M_VALUES: return pairs(c, &self->u.map, 2);
    case M_DICTSORT: return dictsort(c, self, args, n, at);
    default: return fail_null(c, at, "unknown function");
    }
}

jv *jbuiltin_member(jctx *c, jv *obj, jstr name) {
    static const struct { const char *name; int id; } STR_METHODS[] = {
        {"upper", M_UPPER}, {"lower", M_LOWER}, {"strip", M_STRIP}, {"title", M_TITLE},
        {"capitalize", M_CAPITALIZE}, {"rstrip", M_RSTRIP}, {"lstrip", M_LSTRIP},
        {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH}, {"split", M_SPLIT}, {"replace", M_REPLACE}};
    static const struct { const char *name; int id; } OBJ_METHODS[] = {
        {"get", M_GET}, {"items", M_ITEMS}, {"keys", M_KEYS}, {"values", M_VALUES}, {"dictsort", M_DICTSORT}};
    if (obj->kind == V_STR) {
        if (js_eqc(name, "length")) return jv_num(c, (double)u16_len(obj->u.s), 1);
        for (size_t i = 0; i < sizeof STR_METHODS / sizeof STR_METHODS[0]; i++)
            if (js_eqc(name, STR_METHODS[i].name)) return jv_fn(c, STR_METHODS[i].id, obj);
    } else if (jv_is_array(obj)) {
        if (js_eqc(name, "length")) return jv_num(c, obj->u.arr.n, 1);
    } else if (jv_is_object(obj)) {
        for (size_t i = 0; i < sizeof OBJ_METHODS / sizeof OBJ_METHODS[0]; i++)
            if (js_eqc(name, OBJ_METHODS[i].name)) return jv_fn(c, OBJ_METHODS[i].id, obj);
    }
    return NULL;
}

/* ---- tests ---------------------------------------------------------------------------- */
static const char *const TESTS[] = {"boolean", "callable", "odd", "even", "false", "true", "none",
                                    "string", "number", "integer", "iterable", "mapping", "sequence",
                                    "lower", "upper", "defined", "undefined", "equalto", "eq"};

int jbuiltin_has_test(jstr name) {
    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++)
        if (js_eqc(name, TESTS[i])) return 1;
    return 0;
}

int jbuiltin_test(jctx *c, jstr name, const jv *v, const jv *arg, const jnode *at, int *res) {
    int k = v->kind;
    if (js_eqc(name, "boolean")) *res = k == V_BOOL;
    else if (js_eqc(name, "callable")) *res = k == V_FUNC;
    else if (js_eqc(name, "odd") || js_eqc(name, "even")) {
        if (k != V_INT) return jfail(c, at, "cannot %.*s on %s", NAME_ARGS(name), jv_type_name(v));
        int odd = fmod(v->u.num, 2) != 0;
        *res = js_eqc(name, "odd") ? odd : !odd;
    } else if (js_eqc(name, "false")) *res = k == V_BOOL && !v->u.b;
    else if (js_eqc(name, "true")) *res = k == V_BOOL && v->u.b;
    else if (js_eqc(name, "none")) *res = k == V_NULL;
    else if (js_eqc(name, "string")) *res = k == V_STR;
    else if (js_eqc(name, "number")) *res = jv_is_number(v);
    else if (js_eqc(name, "integer")) *res = k == V_INT;
    else if (js_eqc(name, "iterable")) *res = k == V_ARRAY || k == V_STR;
    else if (js_eqc(name, "mapping")) *res = jv_is_object(v);
    else if (js_eqc(name, "sequence")) *res = jv_is_array(v) || jv_is_object(v) || k == V_STR;
    else if (js_eqc(name, "lower") || js_eqc(name, "upper")) {
        *res = 0;
        if (k == V_STR) {
            jstr m = js_eqc(name, "lower") ? js_lower(c, v->u.s) : js_upper(c, v->u.s);
            if (c->failed) return -1;
            *res = js_eq(m, v->u.s);
        }
    } else if (js_eqc(name, "defined")) *res = k != V_UNDEF;
    else if (js_eqc(name, "undefined")) *res = k == V_UNDEF;
    else if (js_eqc(name, "equalto") || js_eqc(name, "eq")) {
        if (!arg) return jfail(c, at, "Cannot read properties of undefined (reading 'value')");
        *res = jv_strict_eq(v, arg);
    } else return jfail(c, at, "Unknown test: %.*s", NAME_ARGS(name));
    return 0;
}

/* ---- filters -------------------------------------------------------------------------- */
static jv *filter_ident(jctx *c, jv *v, jstr name, const jnode *at) {
    if (js_eqc(name, "safe")) return v;
    if (js_eqc(name, "tojson")) {
        jjson_opts o = {0};
        o.indent = -1;
        o.undef_null = 1;
        return to_json(c, v, &o, at);
    }
    char num[48];
    jbuf b;
    jb_init(&b, &c->a, c->lim.max_output);
    if (jv_is_array(v)) {
        int n = v->u.arr.n;
        c->steps += (uint64_t)n;
        if (js_eqc(name, "list")) return v;
        if (js_eqc(name, "first")) return n ? v->u.arr.items[0] : c->undef;
        if (js_eqc(name, "last")) return n ? v->u.arr.items[n - 1] : c->undef;
        if (js_eqc(name, "length")) return jv_num(c, n, 1);
        if (js_eqc(name, "reverse")) {
            jv *r = jv_array(c, V_ARRAY, n);
            for (int i = 0; r && i < n; i++) r->u.arr.items[i] = v->u.arr.items[n - 1 - i];
            return r;
        }
        if (js_eqc(name, "sort")) {
            sorter S = {c, at, 0, 0, NULL, 0, 0};
            return sorted(c, v, &S);
        }
        if (js_eqc(name, "join")) {
            for (int i = 0; i < n; i++)
                if (join_elem(c, v->u.arr.items[i], &b, at)) return NULL;
            return str_out(c, &b, at);
        }
        if (js_eqc(name, "string")) {
            jjson_opts o = {0};
            o.indent = -1;
            return to_json(c, v, &o, at);
        }
        if (js_eqc(name, "unique")) {
            jv *r = jv_array(c, V_ARRAY, n);
            if (!r) return NULL;
            int k = 0;
            for (int i = 0; i < n; i++) {
                jv *x = v->u.arr.items[i];
                int seen = 0;
                for (int j = 0; j < k && !seen; j++) {
                    jv *y = r->u.arr.items[j];
                    seen = jv_strict_eq(x, y) ||
                           (jv_is_number(x) && jv_is_number(y) && isnan(x->u.num) && isnan(y->u.num));
                }
                c->steps += (uint64_t)k;
                if (!seen) r->u.arr.items[k++] = x;
            }
            r->u.arr.n = k;
            return r;
        }
        jfail(c, at, "Unknown ArrayValue filter: %.*s", NAME_ARGS(name));
        return NULL;
    }
    if (v->kind == V_STR) {
        jstr s = v->u.s;
        if (js_eqc(name, "length")) return jv_num(c, (double)u16_len(s), 1);
        if (js_eqc(name, "upper")) return jv_str(c, js_upper(c, s));
        if (js_eqc(name, "lower")) return jv_str(c, js_lower(c, s));
        if (js_eqc(name, "title") || js_eqc(name, "capitalize"))
            return jbuiltin_call(c, jv_fn(c, js_eqc(name, "title") ? M_TITLE : M_CAPITALIZE, v), NULL, 0, at);
        if (js_eqc(name, "trim")) return jv_str(c, trim(s, 1, 1));
        if (js_eqc(name, "indent")) {
            size_t b0 = 0;
            for (size_t i = 0; i <= s.n; i++) {
                if (i < s.n && s.p[i] != '\n') continue;
                if (b0 > 0 && i > b0) jb_addc(&b, "    ");
                jb_add(&b, s.p + b0, i - b0);
                if (i < s.n) jb_addch(&b, '\n');
                b0 = i + 1;
            }
            return str_out(c, &b, at);
        }
        if (js_eqc(name, "join") || js_eqc(name, "string")) return v;
        if (js_eqc(name, "int")) {
            double x = js_parse_int(s);
            return jv_num(c, isnan(x) ? 0 : x, 1);
        }
        if (js_eqc(name, "float")) {
            double x = js_parse_float(s);
            return jv_num(c, isnan(x) ? 0 : x, 0);
        }
        jfail(c, at, "Unknown StringValue filter: %.*s", NAME_ARGS(name));
        return NULL;
    }
    if (jv_is_number(v)) {
        if (js_eqc(name, "abs")) return jv_num(c, fabs(v->u.num), v->kind == V_INT);
        if (js_eqc(name, "int")) return jv_num(c, trunc(v->u.num) + 0.0, 1);
        if (js_eqc(name, "float")) return jv_num(c, v->u.num, 0);
        if (js_eqc(name, "string")) {
            if (jv_render(c, v, &b, at)) return NULL;
            return str_out(c, &b, at);
        }
        jfail(c, at, "Unknown NumericValue filter: %.*s", NAME_ARGS(name));
        return NULL;
    }
    if (jv_is_object(v)) {
        if (js_eqc(name, "items")) return pairs(c, &v->u.map, 0);
        if (js_eqc(name, "length")) return jv_num(c, v->u.map.n, 1);
        jv *m = jbuiltin_member(c, v, name);
        if (m) return jbuiltin_call(c, m, NULL, 0, at);
        if (!c->failed) jfail(c, at, "Unknown ObjectValue filter: %.*s", NAME_ARGS(name));
        return NULL;
    }
    if (v->kind == V_BOOL) {
        if (js_eqc(name, "bool")) return v;
        if (js_eqc(name, "int")) return jv_num(c, v->u.b, 1);
        if (js_eqc(name, "float")) return jv_num(c, v->u.b, 0);
        if (js_eqc(name, "string")) return jv_strc(c, v->u.b ? "true" : "false");
        jfail(c, at, "Unknown BooleanValue filter: %.*s", NAME_ARGS(name));
        return NULL;
    }
    (void)num;
    jfail(c, at, "Cannot apply filter \"%.*s\" to type: %s", NAME_ARGS(name), jv_type_name(v));
    return NULL;
}

static int js_truthy_value(const jv *v) { /* JavaScript truthiness of v.value */
    switch (v->kind) {
    case V_ARRAY:
    case V_TUPLE:
    case V_OBJECT:
    case V_KWARGS:
    case V_NAMESPACE:
    case V_FUNC: return 1;
    default: return jv_truthy(v);
    }
}

static jv *filter_call(jctx *c, jv *v, const jnode *f, jscope *env) {
    const jnode *at = f;
    if (f->a->kind != N_IDENT) {
        jfail(c, at, "Unknown filter: %s", "expression");
        return NULL;
    }
    jstr name = f->a->s;
    const jnode *const *fargs = (const jnode *const *)f->list;
    jv **args;
    int n;
    jmap kw;
    int generic = js_eqc(name, "tojson") || js_eqc(name, "join") || js_eqc(name, "int") || js_eqc(name, "float") ||
                  js_eqc(name, "default");
    if (generic && jeval_args(c, fargs, f->n, env, &args, &n, &kw)) return NULL;
    if (js_eqc(name, "tojson")) {
        jjson_opts o = {0};
        o.indent = -1;
        o.undef_null = 1;
        jv *indent = kw_get(&kw, "indent"), *ascii = kw_get(&kw, "ensure_ascii"), *sk = kw_get(&kw, "sort_keys");
        jv *seps = kw_get(&kw, "separators");
        if (indent && indent->kind != V_INT && indent->kind != V_NULL) return fail_null(c, at, "If set, indent must be a number");
        if (ascii && ascii->kind != V_BOOL) return fail_null(c, at, "If set, ensure_ascii must be a boolean");
        if (sk && sk->kind != V_BOOL) return fail_null(c, at, "If set, sort_keys must be a boolean");
        if (indent && indent->kind == V_INT && indent->u.num != 0) {
            if (indent->u.num < 0 || indent->u.num > 1000) return fail_null(c, at, "Invalid count value: indent");
            o.indent = (int)indent->u.num;
        }
        o.ensure_ascii = ascii && ascii->u.b;
        o.sort_keys = sk && sk->u.b;
        if (seps && seps->kind != V_NULL) {
            if (!jv_is_array(seps) || seps->u.arr.n != 2 || seps->u.arr.items[0]->kind != V_STR ||
                seps->u.arr.items[1]->kind != V_STR)
                return fail_null(c, at, "separators must be a tuple of two strings");
            o.have_seps = 1;
            o.item_sep = seps->u.arr.items[0]->u.s;
            o.key_sep = seps->u.arr.items[1]->u.s;
        }
        return to_json(c, v, &o, at);
    }
    jbuf b;
    jb_init(&b, &c->a, c->lim.max_output);
    if (js_eqc(name, "join")) {
        if (v->kind != V_STR && !jv_is_array(v)) {
            jfail(c, at, "Cannot apply filter \"join\" to type: %s", jv_type_name(v));
            return NULL;
        }
        jv *sep = n > 0 ? args[0] : kw_get(&kw, "separator");
        if (sep && sep->kind != V_STR) return fail_null(c, at, "separator must be a string");
        jstr d = sep ? sep->u.s : JSTR("");
        if (v->kind == V_STR) {
            for (size_t i = 0; i < v->u.s.n;) {
                size_t st = i;
                u8_next(v->u.s.p, v->u.s.n, &i);
                if (st) jb_adds(&b, d);
                jb_add(&b, v->u.s.p + st, i - st);
            }
        } else {
            c->steps += (uint64_t)v->u.arr.n;
            for (int i = 0; i < v->u.arr.n; i++) {
                if (i) jb_adds(&b, d);
                if (join_elem(c, v->u.arr.items[i], &b, at)) return NULL;
            }
        }
        return str_out(c, &b, at);
    }
    if (js_eqc(name, "int") || js_eqc(name, "float")) {
        int is_int = js_eqc(name, "int");
        jv *def = n > 0 ? args[0] : kw_get(&kw, "default");
        if (!def && !(def = jv_num(c, 0, is_int))) return NULL;
        if (v->kind == V_STR) {
            double x = is_int ? js_parse_int(v->u.s) : js_parse_float(v->u.s);
            return isnan(x) ? def : jv_num(c, x, is_int);
        }
        if (jv_is_number(v)) return jv_num(c, is_int ? trunc(v->u.num) + 0.0 : v->u.num, is_int);
        if (v->kind == V_BOOL) return jv_num(c, v->u.b, is_int);
        jfail(c, at, "Cannot apply filter \"%.*s\" to type: %s", NAME_ARGS(name), jv_type_name(v));
        return NULL;
    }
    if (js_eqc(name, "default")) {
        jv *def = n > 0 ? args[0] : NULL;
        if (!def && !(def = jv_strc(c, ""))) return NULL;
        jv *boolean = n > 1 ? args[1] : kw_get(&kw, "boolean");
        if (boolean && boolean->kind != V_BOOL) return fail_null(c, at, "`default` filter flag must be a boolean");
        if (v->kind == V_UNDEF || (boolean && boolean->u.b && !jv_truthy(v))) return def;
        return v;
    }
    if (jv_is_array(v)) {
        int arr_n = v->u.arr.n;
        if (js_eqc(name, "sort")) {
            if (jeval_args(c, fargs, f->n, env, &args, &n, &kw)) return NULL;
            jv *rev = n > 0 ? args[0] : kw_get(&kw, "reverse");
            jv *cs = n > 1 ? args[1] : kw_get(&kw, "case_sensitive");
            jv *attr = n > 2 ? args[2] : kw_get(&kw, "attribute");
            if (rev && rev->kind != V_BOOL) return fail_null(c, at, "reverse must be a boolean");
            if (cs && cs->kind != V_BOOL) return fail_null(c, at, "case_sensitive must be a boolean");
            if (attr && attr->kind != V_STR && attr->kind != V_INT && attr->kind != V_NULL)
                return fail_null(c, at, "attribute must be a string, integer, or null");
            sorter S = {c, at, cs && cs->u.b, rev && rev->u.b, attr && attr->kind != V_NULL ? attr : NULL, 0, 0};
            return sorted(c, v, &S);
        }
        if (js_eqc(name, "selectattr") || js_eqc(name, "rejectattr")) {
            int select = js_eqc(name, "selectattr");
            for (int i = 0; i < arr_n; i++)
                if (!jv_is_container(v->u.arr.items[i])) {
                    jfail(c, at, "`%.*s` can only be applied to array of objects", NAME_ARGS(name));
                    return NULL;
                }
            for (int i = 0; i < f->n; i++)
                if (fargs[i]->kind != N_STRING) {
                    jfail(c, at, "arguments of `%.*s` must be strings", NAME_ARGS(name));
                    return NULL;
                }
            jv *a[3] = {NULL, NULL, NULL};
            for (int i = 0; i < f->n; i++) {
                jv *x = jeval(c, fargs[i], env);
                if (!x) return NULL;
                if (i < 3) a[i] = x;
            }
            if (a[1] && !jbuiltin_has_test(a[1]->u.s)) {
                jfail(c, at, "Unknown test: %.*s", NAME_ARGS(a[1]->u.s));
                return NULL;
            }
            jv *r = jv_array(c, V_ARRAY, arr_n);
            if (!r) return NULL;
            int k = 0;
            for (int i = 0; i < arr_n; i++) {
                jv *item = v->u.arr.items[i];
                jv *x = a[0] ? jmap_get(&item->u.map, a[0]->u.s) : NULL;
                int res = 0;
                if (x) {
                    if (a[1]) {
                        if (jbuiltin_test(c, a[1]->u.s, x, a[2], at, &res)) return NULL;
                    } else res = jv_truthy(x);
                }
                if (select ? res : !res) r->u.arr.items[k++] = item;
            }
            r->u.arr.n = k;
            c->steps += (uint64_t)arr_n;
            return r;
        }
        if (js_eqc(name, "map")) {
            if (jeval_args(c, fargs, f->n, env, &args, &n, &kw)) return NULL;
            jv *attr = kw_get(&kw, "attribute");
            if (!attr) return fail_null(c, at, "`map` expressions without `attribute` set are not currently supported.");
            if (attr->kind != V_STR) return fail_null(c, at, "attribute must be a string");
            jv *def = kw_get(&kw, "default");
            jv *r = jv_array(c, V_ARRAY, arr_n);
            for (int i = 0; r && i < arr_n; i++) {
                jv *item = v->u.arr.items[i];
                if (!jv_is_container(item)) return fail_null(c, at, "items in map must be an object");
                jv *x = attribute(c, item, attr->u.s);
                r->u.arr.items[i] = x->kind == V_UNDEF ? (def ? def : c->undef) : x;
            }
            c->steps += (uint64_t)arr_n;
            return r;
        }
        jfail(c, at, "Unknown ArrayValue filter: %.*s", NAME_ARGS(name));
        return NULL;
    }
    if (v->kind == V_STR) {
        if (js_eqc(name, "indent")) {
            if (jeval_args(c, fargs, f->n, env, &args, &n, &kw)) return NULL;
            jv *width = n > 0 ? args[0] : kw_get(&kw, "width");
            jv *first = n > 1 ? args[1] : kw_get(&kw, "first");
            jv *blank = n > 2 ? args[2] : kw_get(&kw, "blank");
            if (width && width->kind != V_INT && width->kind != V_STR)
                return fail_null(c, at, "width must be an integer or a string");
            jbuf ind;
            jb_init(&ind, &c->a, c->lim.max_output);
            if (!width) jb_addc(&ind, "    ");
            else if (width->kind == V_STR) jb_adds(&ind, width->u.s);
            else
                for (double i = 0; i < width->u.num && !ind.failed; i++) jb_addch(&ind, ' ');
            if (ind.failed) return str_out(c, &ind, at);
            int fst = first && js_truthy_value(first), blk = blank && js_truthy_value(blank);
            jstr s = v->u.s;
            size_t b0 = 0;
            for (size_t i = 0; i <= s.n; i++) {
                if (i < s.n && s.p[i] != '\n') continue;
                int line0 = b0 == 0, empty = i == b0;
                if (!((!fst && line0) || (!blk && empty))) jb_add(&b, ind.p, ind.n);
                jb_add(&b, s.p + b0, i - b0);
                if (i < s.n) jb_addch(&b, '\n');
                b0 = i + 1;
            }
            return str_out(c, &b, at);
        }
        if (js_eqc(name, "replace")) {
            if (jeval_args(c, fargs, f->n, env, &args, &n, &kw)) return NULL;
            jv **all = jargs_with_kwargs(c, args, n, &kw);
            return all ? replace(c, v->u.s, all, n + 1, at) : NULL;
        }
        jfail(c, at, "Unknown StringValue filter: %.*s", NAME_ARGS(name));
        return NULL;
    }
    if (jv_is_object(v)) {
        jv *m = jbuiltin_member(c, v, name);
        if (m) {
            if (jeval_call_args(c, fargs, f->n, env, &args, &n)) return NULL;
            return jbuiltin_call(c, m, args, n, at);
        }
        if (!c->failed) jfail(c, at, "Unknown ObjectValue filter: %.*s", NAME_ARGS(name));
        return NULL;
    }
    jfail(c, at, "Cannot apply filter \"%.*s\" to type: %s", NAME_ARGS(name), jv_type_name(v));
    return NULL;
}

jv *jbuiltin_filter(jctx *c, jv *operand, const jnode *f, jscope *env) {
    if (f->kind == N_IDENT) return filter_ident(c, operand, f->s, f);
    if (f->kind == N_CALL) return filter_call(c, operand, f, env);
    jfail(c, f, "Unknown filter: %s", "expression");
    return NULL;
}
