/* jinja_eval.c — rendering an AST: statements into output, expressions into
 * values, scopes, macros and call blocks, as @huggingface/jinja's
 * Interpreter does it (its quirks included: a for loop's scope is shared by
 * its iterations, an iteration left by break or continue loses its output,
 * `loop` is an ordinary mapping, `a == b` compares JavaScript values).
 * Every step, nesting level, macro call, byte of output and of memory is
 * counted against the limits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja_internal.h"
#include "core/error.h"

#define MAX_EVAL_DEPTH 1000

enum { CTRL_NONE, CTRL_BREAK, CTRL_CONTINUE };

/* the interpreter's control flow state lives beside jctx: break/continue
 * travel up as a failed evaluation with this set */
typedef struct jrun {
    jctx c;
    int control;
} jrun;

#define RUN(c) ((jrun *)(c))

static int step(jctx *c, const jnode *at) {
    if (++c->steps > c->lim.max_steps) {
        jfail(c, at, "the template ran more than %llu steps (the limit): a loop without end?",
              (unsigned long long)c->lim.max_steps);
        c->err->code = Q35_ERR_ARG;
        return -1;
    }
    return 0;
}

static int buf_check(jctx *c, jbuf *b, const jnode *at) {
    if (!b->failed) return 0;
    if (b->failed == 2) {
        jfail(c, at, "the output grew beyond %zu bytes (the limit)", c->lim.max_output);
        c->err->code = Q35_ERR_ARG;
        return -1;
    }
    return jnomem(c);
}

/* ---- scopes ---------------------------------------------------------------------- */
static jscope *scope_new(jctx *c, jscope *parent) {
    jscope *s = ja_alloc(&c->a, sizeof *s);
    if (!s) {
        jnomem(c);
        return NULL;
    }
    memset(s, 0, sizeof *s);
    s->parent = parent;
    return s;
}

static int scope_set(jctx *c, jscope *s, jstr name, jv *v) { return jmap_set(c, &s->vars, name, v); }

static jv *scope_get(jctx *c, jscope *s, jstr name) {
    for (; s; s = s->parent) {
        jv *v = jmap_get(&s->vars, name);
        if (v) return v;
    }
    if (js_eqc(name, "namespace")) return jv_fn(c, F_NAMESPACE, NULL);
    return c->undef;
}

/* ---- statements ------------------------------------------------------------------- */
static int render_block(jctx *c, jnode *const *st, int n, jscope *env, jbuf *out);

/* a block rendered on its own (set blocks, macros): a string value */
static jv *render_string(jctx *c, jnode *const *st, int n, jscope *env, const jnode *at) {
    jbuf b;
    jb_init(&b, &c->a, c->lim.max_output);
    if (render_block(c, st, n, env, &b)) return NULL;
    if (buf_check(c, &b, at)) return NULL;
    return jv_str(c, jb_str(&b));
}

static int exec_set(jctx *c, const jnode *s, jscope *env) {
    jv *rhs = s->b ? jeval(c, s->b, env) : render_string(c, s->list, s->n, env, s);
    if (!rhs) return -1;
    const jnode *to = s->a;
    if (to->kind == N_IDENT) return scope_set(c, env, to->s, rhs);
    if (to->kind == N_TUPLE) {
        if (!jv_is_array(rhs))
            return jfail(c, s, "Cannot unpack non-iterable type in set: %s", jv_type_name(rhs));
        if (rhs->u.arr.n != to->n)
            return jfail(c, s, "Too %s items to unpack in set", to->n > rhs->u.arr.n ? "few" : "many");
        for (int i = 0; i < to->n; i++) {
            if (to->list[i]->kind != N_IDENT) return jfail(c, s, "Cannot unpack to non-identifier in set");
            if (scope_set(c, env, to->list[i]->s, rhs->u.arr.items[i])) return -1;
        }
        return 0;
    }
    if (to->kind == N_MEMBER) {
        jv *obj = jeval(c, to->a, env);
        if (!obj) return -1;
        if (obj->kind != V_NAMESPACE) return jfail(c, s, "cannot assign attribute on non-namespace object");
        if (to->b->kind != N_IDENT) return jfail(c, s, "Cannot assign to member with non-identifier property");
        return jmap_set(c, &obj->u.map, to->b->s, rhs);
    }
    return jfail(c, s, "Invalid LHS inside assignment expression");
}

static int bind_loopvar(jctx *c, const jnode *var, jv *cur, jscope *scope) {
    if (var->kind == N_IDENT) return scope_set(c, scope, var->s, cur);
    for (int j = 0; j < var->n; j++) {
        if (var->list[j]->kind != N_IDENT)
            return jfail(c, var, "Cannot unpack non-identifier type: %s", "expression");
        jv *v = jv_is_array(cur) && j < cur->u.arr.n ? cur->u.arr.items[j] : c->undef;
        if (scope_set(c, scope, var->list[j]->s, v)) return -1;
    }
    return 0;
}

static jv *loop_value(jctx *c, int i, int n, jv *prev, jv *next) {
    jv *l = jv_new(c, V_OBJECT);
    if (!l) return NULL;
    jmap *m = &l->u.map;
    if (jmap_reserve(c, m, 9)) return NULL;
    jv *v[9] = {jv_num(c, i + 1, 1), jv_num(c, i, 1), jv_num(c, n - i, 1), jv_num(c, n - i - 1, 1),
                jv_bool(c, i == 0), jv_bool(c, i == n - 1), jv_num(c, n, 1), prev ? prev : c->undef,
                next ? next : c->undef};
    static const char *const names[9] = {"index", "index0", "revindex", "revindex0", "first",
                                         "last", "length", "previtem", "nextitem"};
    for (int k = 0; k < 9; k++)
        if (!v[k] || jmap_set(c, m, (jstr){names[k], strlen(names[k])}, v[k])) return NULL;
    return l;
}

static int render_for(jctx *c, const jnode *s, jscope *env, jbuf *out) {
    jscope *scope = scope_new(c, env);
    if (!scope) return -1;
    const jnode *test = NULL;
    jv *it;
    if (s->b->kind == N_SELECT) {
        it = jeval(c, s->b->a, scope);
        test = s->b->b;
    } else it = jeval(c, s->b, scope);
    if (!it) return -1;
    if (!jv_is_array(it) && !jv_is_object(it))
        return jfail(c, s, "Expected iterable or object type in for loop: got %s", jv_type_name(it));
    jv **cand;
    int n_cand;
    if (jv_is_object(it)) {
        const jmap *m = &it->u.map;
        n_cand = m->n;
        cand = n_cand ? ja_alloc(&c->a, (size_t)n_cand * sizeof *cand) : NULL;
        if (n_cand && !cand) return jnomem(c);
        for (int i = 0; i < n_cand; i++)
            if (!(cand[i] = jv_str(c, m->keys[i]))) return -1;
    } else {
        cand = it->u.arr.items;
        n_cand = it->u.arr.n;
    }
    const jnode *var = s->a;
    jv **items = cand;
    int n = n_cand;
    if (var->kind != N_IDENT || test) {
        items = n_cand ? ja_alloc(&c->a, (size_t)n_cand * sizeof *items) : NULL;
        if (n_cand && !items) return jnomem(c);
        n = 0;
        for (int i = 0; i < n_cand; i++) {
            jv *cur = cand[i];
            if (step(c, s)) return -1;
            if (var->kind == N_TUPLE) {
                if (cur->kind != V_ARRAY)
                    return jfail(c, s, "Cannot unpack non-iterable type: %s", jv_type_name(cur));
                if (var->n != cur->u.arr.n)
                    return jfail(c, s, "Too %s items to unpack", var->n > cur->u.arr.n ? "few" : "many");
            }
            if (test) {
                jscope *ls = scope_new(c, scope);
                if (!ls || bind_loopvar(c, var, cur, ls)) return -1;
                jv *t = jeval(c, test, ls);
                if (!t) return -1;
                if (!jv_truthy(t)) continue;
            }
            items[n++] = cur;
        }
    }
    int none = 1;
    for (int i = 0; i < n; i++) {
        if (step(c, s)) return -1;
        jv *loop = loop_value(c, i, n, i > 0 ? items[i - 1] : NULL, i < n - 1 ? items[i + 1] : NULL);
        if (!loop || scope_set(c, scope, JSTR("loop"), loop) || bind_loopvar(c, var, items[i], scope))
            return -1;
        size_t mark = out->n;
        if (render_block(c, s->list, s->n, scope, out)) {
            int ctl = RUN(c)->control;
            if (c->failed || ctl == CTRL_NONE) return -1;
            RUN(c)->control = CTRL_NONE;
            out->n = mark; /* the iteration's output is lost, as in the reference */
            if (out->p) out->p[mark] = '\0';
            if (ctl == CTRL_BREAK) break;
            continue;
        }
        none = 0;
    }
    if (none) return render_block(c, s->list2, s->n2, scope, out);
    return 0;
}

static int render_block(jctx *c, jnode *const *st, int n, jscope *env, jbuf *out) {
    if (++c->depth > MAX_EVAL_DEPTH) {
        jfail(c, n ? st[0] : NULL, "the template nests deeper than %d levels while rendering", MAX_EVAL_DEPTH);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const jnode *s = st[i];
        if (step(c, s)) {
            rc = -1;
            break;
        }
        switch (s->kind) {
        case N_STRING: jb_adds(out, s->s); break;
        case N_IF: {
            jv *t = jeval(c, s->a, env);
            if (!t) rc = -1;
            else if (jv_truthy(t)) rc = render_block(c, s->list, s->n, env, out);
            else rc = render_block(c, s->list2, s->n2, env, out);
            break;
        }
        case N_FOR: rc = render_for(c, s, env, out); break;
        case N_SET: rc = exec_set(c, s, env); break;
        case N_COMMENT: break;
        default: {
            jv *v = jeval(c, s, env);
            if (!v) rc = -1;
            else if (v->kind != V_NULL && v->kind != V_UNDEF) rc = jv_render(c, v, out, s);
        }
        }
        if (!rc && buf_check(c, out, s)) rc = -1;
    }
    c->depth--;
    return rc;
}

/* ---- calls -------------------------------------------------------------------------- */
int jeval_args(jctx *c, const jnode *const *args, int n, jscope *env, jv ***pos, int *n_pos, jmap *kw) {
    jv **p = NULL;
    int k = 0, cap = 0;
    for (int i = 0; i < n; i++) {
        if (args[i]->kind == N_KWARG || args[i]->kind == N_KWSPREAD) continue;
        jv *v = jeval(c, args[i]->kind == N_SPREAD ? args[i]->a : args[i], env);
        if (!v) return -1;
        int add = 1;
        if (args[i]->kind == N_SPREAD) {
            if (!jv_is_array(v)) return jfail(c, args[i], "Cannot unpack non-iterable type: %s", jv_type_name(v));
            add = v->u.arr.n;
        }
        if (k + add > cap) {
            int nc = cap ? cap : 4;
            while (nc < k + add) nc *= 2;
            jv **q = ja_alloc(&c->a, (size_t)nc * sizeof *q);
            if (!q) return jnomem(c);
            if (k) memcpy(q, p, (size_t)k * sizeof *q);
            p = q;
            cap = nc;
        }
        if (args[i]->kind == N_SPREAD)
            for (int j = 0; j < add; j++) p[k++] = v->u.arr.items[j];
        else p[k++] = v;
    }
    memset(kw, 0, sizeof *kw);
    for (int i = 0; i < n; i++) {
        if (args[i]->kind == N_KWARG) {
            if (jmap_get(kw, args[i]->s))
                return jfail(c, args[i], "Got multiple values for keyword argument '%.*s'",
                             (int)(args[i]->s.n < 60 ? args[i]->s.n : 60), args[i]->s.p);
            jv *v = jeval(c, args[i]->a, env);
            if (!v || jmap_set(c, kw, args[i]->s, v)) return -1;
        } else if (args[i]->kind == N_KWSPREAD) {
            jv *v = jeval(c, args[i]->a, env);
            if (!v) return -1;
            if (!jv_is_object(v))
                return jfail(c, args[i], "Argument after ** must be a mapping, not %s", jv_type_name(v));
            for (int j = 0; j < v->u.map.n; j++) {
                if (jmap_get(kw, v->u.map.keys[j]))
                    return jfail(c, args[i], "Got multiple values for keyword argument '%.*s'",
                                 (int)(v->u.map.keys[j].n < 60 ? v->u.map.keys[j].n : 60), v->u.map.keys[j].p);
                if (jmap_set(c, kw, v->u.map.keys[j], v->u.map.vals[j])) return -1;
            }
        }
    }
    *pos = p;
    *n_pos = k;
    return 0;
}

jv **jargs_with_kwargs(jctx *c, jv **p, int np, const jmap *kw) {
    jv **q = ja_alloc(&c->a, (size_t)(np + 1) * sizeof *q);
    jv *k = jv_new(c, V_KWARGS);
    if (!q || !k) {
        jnomem(c);
        return NULL;
    }
    if (np) memcpy(q, p, (size_t)np * sizeof *q);
    k->u.map = *kw;
    q[np] = k;
    return q;
}

int jeval_call_args(jctx *c, const jnode *const *args, int n, jscope *env, jv ***out, int *n_out) {
    int special = 0;
    for (int i = 0; i < n; i++)
        if (args[i]->kind == N_KWARG || args[i]->kind == N_SPREAD || args[i]->kind == N_KWSPREAD) special = 1;
    if (special) {
        jv **p;
        int np;
        jmap kw;
        if (jeval_args(c, args, n, env, &p, &np, &kw)) return -1;
        if (kw.n > 0) {
            if (!(p = jargs_with_kwargs(c, p, np, &kw))) return -1;
            np++;
        }
        *out = p;
        *n_out = np;
        return 0;
    }
    jv **p = n ? ja_alloc(&c->a, (size_t)n * sizeof *p) : NULL;
    if (n && !p) return jnomem(c);
    for (int i = 0; i < n; i++)
        if (!(p[i] = jeval(c, args[i], env))) return -1;
    *out = p;
    *n_out = n;
    return 0;
}

/* bindMacroArguments: parameters from positional and keyword arguments,
 * kwargs/varargs where the body reads them, then the defaults in order */
static int bind_args(jctx *c, const char *who, jnode *const *params, int np, unsigned uses, jv **args,
                     int n, jscope *scope, const jnode *at) {
    jmap kw = {0};
    if (n > 0 && args[n - 1]->kind == V_KWARGS) {
        if (jmap_copy(c, &kw, &args[n - 1]->u.map)) return -1;
        n--;
    }
    char *used = np ? ja_alloc(&c->a, (size_t)np) : NULL;
    if (np && !used) return jnomem(c);
    for (int i = 0; i < np; i++) {
        jstr name = params[i]->s;
        jv *v = i < n ? args[i] : NULL;
        if (!v) {
            int k;
            for (k = 0; k < kw.n; k++)
                if (kw.vals[k] && js_eq(kw.keys[k], name)) break;
            if (k < kw.n) {
                v = kw.vals[k];
                kw.vals[k] = NULL; /* taken */
            }
        }
        used[i] = v == NULL && params[i]->kind == N_KWARG; /* its default is pending */
        if (scope_set(c, scope, name, v ? v : c->undef)) return -1;
    }
    jmap rest = {0};
    for (int k = 0; k < kw.n; k++)
        if (kw.vals[k] && jmap_set(c, &rest, kw.keys[k], kw.vals[k])) return -1;
    if (uses & J_USES_KWARGS) {
        jv *o = jv_new(c, V_OBJECT);
        if (!o) return -1;
        o->u.map = rest;
        if (scope_set(c, scope, JSTR("kwargs"), o)) return -1;
    } else if (rest.n > 0)
        return jfail(c, at, "macro %s takes no keyword argument '%.*s'", who,
                     (int)(rest.keys[0].n < 60 ? rest.keys[0].n : 60), rest.keys[0].p);
    if (uses & J_USES_VARARGS) {
        int extra = n > np ? n - np : 0;
        jv *a = jv_array(c, V_ARRAY, extra);
        if (!a) return -1;
        for (int i = 0; i < extra; i++) a->u.arr.items[i] = args[np + i];
        if (scope_set(c, scope, JSTR("varargs"), a)) return -1;
    } else if (n > np)
        return jfail(c, at, "macro %s takes not more than %d argument(s)", who, np);
    for (int i = 0; i < np; i++) {
        if (!used[i]) continue;
        jv *v = jeval(c, params[i]->a, scope);
        if (!v || scope_set(c, scope, params[i]->s, v)) return -1;
    }
    return 0;
}

jv *jcall(jctx *c, jv *fn, jv **args, int n, jscope *call_site, const jnode *at) {
    if (fn->u.fn.id != F_MACRO && fn->u.fn.id != F_CALLER) return jbuiltin_call(c, fn, args, n, at);
    if (++c->calls > c->lim.max_depth) {
        jfail(c, at, "macro calls nest deeper than %d (the limit): endless recursion?", c->lim.max_depth);
        c->err->code = Q35_ERR_ARG;
        return NULL;
    }
    const jnode *m = fn->u.fn.node;
    jv *r = NULL;
    if (fn->u.fn.id == F_MACRO) {
        jscope *parent = fn->u.fn.env;
        char who[80];
        snprintf(who, sizeof who, "'%.*s'", (int)(m->s.n < 60 ? m->s.n : 60), m->s.p);
        if (m->uses & J_USES_CALLER) {
            jv *caller = NULL;
            if (call_site && call_site->call_block) caller = jmap_get(&call_site->vars, JSTR("caller"));
            if (!(parent = scope_new(c, parent)) || scope_set(c, parent, JSTR("caller"), caller ? caller : c->undef))
                goto out;
        }
        jscope *scope = scope_new(c, parent);
        if (!scope || bind_args(c, who, m->list, m->n, m->uses, args, n, scope, at)) goto out;
        r = render_string(c, m->list2, m->n2, scope, at);
    } else {
        jscope *scope = scope_new(c, fn->u.fn.env);
        int np = m->n2 > 0 ? m->n2 : 0;
        if (!scope || bind_args(c, "None", m->list2, np, m->uses, args, n, scope, at)) goto out;
        r = render_string(c, m->list, m->n, scope, at);
    }
out:
    c->calls--;
    return r;
}

static jv *eval_call_stmt(jctx *c, const jnode *s, jscope *env) {
    jv *caller = jv_fn(c, F_CALLER, NULL);
    if (!caller) return NULL;
    caller->u.fn.node = s;
    caller->u.fn.env = env;
    const jnode *call = s->a;
    jv **p;
    int np;
    jmap kw;
    if (jeval_args(c, (const jnode *const *)call->list, call->n, env, &p, &np, &kw)) return NULL;
    jv **args = jargs_with_kwargs(c, p, np, &kw);
    if (!args) return NULL;
    jv *fn = jeval(c, call->a, env);
    if (!fn) return NULL;
    if (fn->kind != V_FUNC) {
        jfail(c, s, "Cannot call something that is not a function: got %s", jv_type_name(fn));
        return NULL;
    }
    jscope *site = scope_new(c, env);
    if (!site || scope_set(c, site, JSTR("caller"), caller)) return NULL;
    site->call_block = 1;
    return jcall(c, fn, args, np + 1, site, s);
}

/* ---- expressions -------------------------------------------------------------------- */
static jv *eval_binary(jctx *c, const jnode *x, jscope *env) {
    jv *l = jeval(c, x->a, env);
    if (!l) return NULL;
    int op = x->op;
    if (op == OP_AND) return jv_truthy(l) ? jeval(c, x->b, env) : l;
    if (op == OP_OR) return jv_truthy(l) ? l : jeval(c, x->b, env);
    jv *r = jeval(c, x->b, env);
    if (!r) return NULL;
    if (op == OP_EQ || op == OP_NE) {
        int eq;
        if (jv_loose_eq(c, l, r, x, &eq)) return NULL;
        return jv_bool(c, op == OP_EQ ? eq : !eq);
    }
    if (jv_is_number(l) && jv_is_number(r) && op != OP_CONCAT && op != OP_POW) {
        double a = l->u.num, b = r->u.num;
        int fl = l->kind == V_FLOAT || r->kind == V_FLOAT;
        switch (op) {
        case OP_ADD: return jv_num(c, a + b, !fl);
        case OP_SUB: return jv_num(c, a - b, !fl);
        case OP_MUL: return jv_num(c, a * b, !fl);
        case OP_DIV: return jv_num(c, a / b, 0);
        case OP_FLOORDIV: return jv_num(c, floor(a / b), !fl);
        case OP_MOD: return jv_num(c, fmod(a, b), !fl);
        case OP_LT: return jv_bool(c, a < b);
        case OP_GT: return jv_bool(c, a > b);
        case OP_GE: return jv_bool(c, a >= b);
        case OP_LE: return jv_bool(c, a <= b);
        default: break; /* in, not in: below */
        }
    } else if (l->kind == V_UNDEF || r->kind == V_UNDEF) {
        if (r->kind == V_UNDEF && (op == OP_IN || op == OP_NOT_IN)) return jv_bool(c, op == OP_NOT_IN);
        if (op == OP_CONCAT && l->kind != V_NULL && r->kind != V_NULL) {
            jbuf b;
            jb_init(&b, &c->a, c->lim.max_output);
            if ((l->kind != V_UNDEF && jv_raw(c, l, &b, x)) || (r->kind != V_UNDEF && jv_raw(c, r, &b, x)) ||
                buf_check(c, &b, x))
                return NULL;
            return jv_str(c, jb_str(&b));
        }
        static const char *const OPN[] = {"", "and", "or", "not", "==", "!=", "<", ">", "<=", ">=", "in",
                                          "not in", "+", "-", "*", "/", "//", "%", "**", "~"};
        jfail(c, x, "Cannot perform operation %s on undefined values", OPN[op]);
        return NULL;
    } else if (l->kind == V_NULL || r->kind == V_NULL) {
        jfail(c, x, "Cannot perform operation on null values");
        return NULL;
    } else if (op == OP_CONCAT) {
        jbuf b;
        jb_init(&b, &c->a, c->lim.max_output);
        if (jv_raw(c, l, &b, x) || jv_raw(c, r, &b, x) || buf_check(c, &b, x)) return NULL;
        return jv_str(c, jb_str(&b));
    } else if (op == OP_POW && (jv_is_number(l) || l->kind == V_BOOL) && (jv_is_number(r) || r->kind == V_BOOL)) {
        double a = l->kind == V_BOOL ? l->u.b : l->u.num, b = r->kind == V_BOOL ? r->u.b : r->u.num;
        if (a == 0 && b < 0) {
            jfail(c, x, "0.0 cannot be raised to a negative power");
            return NULL;
        }
        double p = pow(a, b);
        if (fabs(a) == 1 && !isfinite(b)) p = NAN; /* JavaScript: 1 ** NaN, (-1) ** Infinity */
        if (!isfinite(p)) {
            jfail(c, x, "Exponentiation result is not a finite real number");
            return NULL;
        }
        return jv_num(c, p, !(l->kind == V_FLOAT || r->kind == V_FLOAT || b < 0));
    } else if (jv_is_array(l) && jv_is_array(r)) {
        if (op == OP_ADD) {
            jv *a = jv_array(c, V_ARRAY, l->u.arr.n + r->u.arr.n);
            if (!a) return NULL;
            for (int i = 0; i < l->u.arr.n; i++) a->u.arr.items[i] = l->u.arr.items[i];
            for (int i = 0; i < r->u.arr.n; i++) a->u.arr.items[l->u.arr.n + i] = r->u.arr.items[i];
            return a;
        }
    } else if (jv_is_array(r)) {
        if (op == OP_IN || op == OP_NOT_IN) {
            int found = 0;
            for (int i = 0; i < r->u.arr.n && !found; i++) found = jv_strict_eq(r->u.arr.items[i], l);
            return jv_bool(c, op == OP_IN ? found : !found);
        }
    }
    if ((l->kind == V_STR || r->kind == V_STR) && op == OP_ADD) {
        jbuf b;
        jb_init(&b, &c->a, c->lim.max_output);
        if (jv_raw(c, l, &b, x) || jv_raw(c, r, &b, x) || buf_check(c, &b, x)) return NULL;
        return jv_str(c, jb_str(&b));
    }
    if (l->kind == V_STR && r->kind == V_STR && (op == OP_IN || op == OP_NOT_IN)) {
        jstr h = r->u.s, nd = l->u.s;
        int found = nd.n == 0;
        for (size_t i = 0; !found && nd.n <= h.n && i <= h.n - nd.n; i++)
            found = !memcmp(h.p + i, nd.p, nd.n);
        return jv_bool(c, op == OP_IN ? found : !found);
    }
    if (l->kind == V_STR && jv_is_object(r) && (op == OP_IN || op == OP_NOT_IN)) {
        int found = jmap_get(&r->u.map, l->u.s) != NULL;
        return jv_bool(c, op == OP_IN ? found : !found);
    }
    static const char *const OPS[] = {"", "and", "or", "not", "==", "!=", "<", ">", "<=", ">=", "in",
                                      "not in", "+", "-", "*", "/", "//", "%", "**", "~"};
    jfail(c, x, "Unknown operator \"%s\" between %s and %s", OPS[op], jv_type_name(l), jv_type_name(r));
    return NULL;
}

/* Array.prototype.slice-like, as the reference's slice() */
static int slice_bounds(double len, const jv *a, const jv *b, const jv *st, double *out_start, double *out_stop,
                        double *out_step) {
    double step = st->kind == V_INT ? st->u.num : 1;
    double dir = step > 0 ? 1 : step < 0 ? -1 : 0;
    double start, stop;
    if (dir >= 0) {
        start = a->kind == V_INT ? a->u.num : 0;
        start = start < 0 ? fmax(len + start, 0) : fmin(start, len);
        stop = b->kind == V_INT ? b->u.num : len;
        stop = stop < 0 ? fmax(len + stop, 0) : fmin(stop, len);
    } else {
        start = a->kind == V_INT ? a->u.num : len - 1;
        start = start < 0 ? fmax(len + start, -1) : fmin(start, len - 1);
        stop = b->kind == V_INT ? b->u.num : -1;
        stop = stop < -1 ? fmax(len + stop, -1) : fmin(stop, len - 1);
    }
    *out_start = start;
    *out_stop = stop;
    *out_step = step;
    return dir == 0 ? 0 : 1;
}

static jv *eval_slice(jctx *c, jv *obj, const jnode *sl, jscope *env) {
    if (!jv_is_array(obj) && obj->kind != V_STR) {
        jfail(c, sl, "Slice object must be an array or string");
        return NULL;
    }
    jv *a = sl->a ? jeval(c, sl->a, env) : c->undef, *b = a ? (sl->b ? jeval(c, sl->b, env) : c->undef) : NULL;
    jv *st = b ? (sl->c ? jeval(c, sl->c, env) : c->undef) : NULL;
    if (!st) return NULL;
    const char *names[3] = {"start", "stop", "step"};
    jv *parts[3] = {a, b, st};
    for (int i = 0; i < 3; i++)
        if (parts[i]->kind != V_INT && parts[i]->kind != V_UNDEF) {
            jfail(c, sl, "Slice %s must be numeric or undefined", names[i]);
            return NULL;
        }
    /* strings slice by code points */
    int n;
    jstr s = {0};
    size_t *cps = NULL;
    if (obj->kind == V_STR) {
        s = obj->u.s;
        n = 0;
        cps = ja_alloc(&c->a, (s.n + 1) * sizeof *cps);
        if (!cps) {
            jnomem(c);
            return NULL;
        }
        for (size_t i = 0; i < s.n;) {
            cps[n++] = i;
            u8_next(s.p, s.n, &i);
        }
        cps[n] = s.n;
    } else n = obj->u.arr.n;
    double start, stop, stp;
    int any = slice_bounds(n, a, b, st, &start, &stop, &stp);
    double dir = stp > 0 ? 1 : -1;
    int count = 0;
    if (any)
        for (double i = start; dir * i < dir * stop; i += stp) count++;
    if (step(c, sl)) return NULL;
    c->steps += (uint64_t)count;
    if (obj->kind == V_STR) {
        jbuf out;
        jb_init(&out, &c->a, c->lim.max_output);
        if (any)
            for (double i = start; dir * i < dir * stop; i += stp) {
                size_t k = (size_t)i;
                if (i >= 0 && k < (size_t)n) jb_add(&out, s.p + cps[k], cps[k + 1] - cps[k]);
            }
        if (buf_check(c, &out, sl)) return NULL;
        return jv_str(c, jb_str(&out));
    }
    jv *r = jv_array(c, V_ARRAY, count);
    if (!r) return NULL;
    int k = 0;
    if (any)
        for (double i = start; dir * i < dir * stop; i += stp)
            r->u.arr.items[k++] = i >= 0 && i < n ? obj->u.arr.items[(int)i] : c->undef;
    return r;
}

/* UTF-16 unit i (negative: from the end) of s, as String.prototype.at */
static jv *string_at(jctx *c, jstr s, double i) {
    double len = (double)u16_len(s);
    if (i < 0) i += len;
    if (i < 0 || i >= len) return c->undef;
    size_t unit = 0;
    for (size_t k = 0; k < s.n;) {
        size_t st = k;
        uint32_t cp = u8_next(s.p, s.n, &k);
        size_t w = cp >= 0x10000 ? 2 : 1;
        if ((double)unit + (double)w > i) {
            if (w == 1) return jv_str(c, (jstr){s.p + st, k - st});
            return jv_str(c, JSTR("\xEF\xBF\xBD")); /* half of a surrogate pair */
        }
        unit += w;
    }
    return c->undef;
}

static jv *eval_member(jctx *c, const jnode *x, jscope *env) {
    jv *obj = jeval(c, x->a, env);
    if (!obj) return NULL;
    jv *prop;
    if (x->op) {
        if (x->b->kind == N_SLICE) return eval_slice(c, obj, x->b, env);
        if (!(prop = jeval(c, x->b, env))) return NULL;
    } else if (x->b->kind == N_INT) {
        if (!(prop = jv_num(c, x->b->num, 1))) return NULL;
    } else if (!(prop = jv_str(c, x->b->s))) return NULL;
    jv *v = NULL;
    if (jv_is_container(obj)) {
        if (prop->kind != V_STR) {
            jfail(c, x, "Cannot access property with non-string: got %s", jv_type_name(prop));
            return NULL;
        }
        v = jmap_get(&obj->u.map, prop->u.s);
        if (!v && jv_is_object(obj)) v = jbuiltin_member(c, obj, prop->u.s);
    } else if (jv_is_array(obj) || obj->kind == V_STR) {
        if (prop->kind == V_INT) {
            double i = prop->u.num;
            if (obj->kind == V_STR) return string_at(c, obj->u.s, trunc(i));
            double n = obj->u.arr.n;
            i = trunc(i);
            if (i < 0) i += n;
            v = i >= 0 && i < n ? obj->u.arr.items[(int)i] : NULL;
        } else if (prop->kind == V_STR) v = jbuiltin_member(c, obj, prop->u.s);
        else {
            jfail(c, x, "Cannot access property with non-string/non-number: got %s", jv_type_name(prop));
            return NULL;
        }
    } else if (prop->kind != V_STR) {
        jfail(c, x, "Cannot access property with non-string: got %s", jv_type_name(prop));
        return NULL;
    }
    if (c->failed) return NULL;
    return v ? v : c->undef;
}

static jv *eval_object(jctx *c, const jnode *x, jscope *env) {
    jv *o = jv_new(c, V_OBJECT);
    if (!o) return NULL;
    for (int i = 0; i < x->n; i++) {
        jv *k = jeval(c, x->list[i], env);
        if (!k) return NULL;
        if (k->kind != V_STR) {
            jfail(c, x, "Object keys must be strings: got %s", jv_type_name(k));
            return NULL;
        }
        jv *v = jeval(c, x->list2[i], env);
        if (!v || jmap_set(c, &o->u.map, k->u.s, v)) return NULL;
    }
    return o;
}

jv *jeval(jctx *c, const jnode *x, jscope *env) {
    if (!x) return c->undef;
    if (step(c, x)) return NULL;
    if (++c->depth > MAX_EVAL_DEPTH) {
        jfail(c, x, "the template nests deeper than %d levels while rendering", MAX_EVAL_DEPTH);
        return NULL;
    }
    jv *r = NULL;
    switch (x->kind) {
    case N_IDENT: r = scope_get(c, env, x->s); break;
    case N_INT: r = jv_num(c, x->num, 1); break;
    case N_FLOAT: r = jv_num(c, x->num, 0); break;
    case N_STRING: r = jv_str(c, x->s); break;
    case N_BINARY: r = eval_binary(c, x, env); break;
    case N_MEMBER: r = eval_member(c, x, env); break;
    case N_CALL: {
        jv **args;
        int n;
        if (jeval_call_args(c, (const jnode *const *)x->list, x->n, env, &args, &n)) break;
        jv *fn = jeval(c, x->a, env);
        if (!fn) break;
        if (fn->kind != V_FUNC) {
            jfail(c, x, "Cannot call something that is not a function: got %s", jv_type_name(fn));
            break;
        }
        r = jcall(c, fn, args, n, env, x);
        break;
    }
    case N_FILTER: {
        jv *v = jeval(c, x->a, env);
        if (v) r = jbuiltin_filter(c, v, x->b, env);
        break;
    }
    case N_TEST: {
        jv *v = jeval(c, x->a, env);
        int res;
        if (!v) break;
        if (!jbuiltin_has_test(x->s)) {
            jfail(c, x, "Unknown test: %.*s", (int)(x->s.n < 60 ? x->s.n : 60), x->s.p);
            break;
        }
        if (jbuiltin_test(c, x->s, v, NULL, x, &res)) break;
        r = jv_bool(c, x->op ? !res : res);
        break;
    }
    case N_TERNARY: {
        jv *t = jeval(c, x->a, env);
        if (t) r = jeval(c, jv_truthy(t) ? x->b : x->c, env);
        break;
    }
    case N_UNARY: {
        jv *v = jeval(c, x->a, env);
        if (!v) break;
        if (x->op == OP_NOT) r = jv_bool(c, !jv_truthy(v));
        else if (jv_is_number(v) || v->kind == V_BOOL) {
            double a = v->kind == V_BOOL ? v->u.b : v->u.num;
            r = jv_num(c, x->op == OP_SUB ? -a : a, v->kind != V_FLOAT);
        } else jfail(c, x, "Unknown operator \"%s\" for %s", x->op == OP_SUB ? "-" : "+", jv_type_name(v));
        break;
    }
    case N_ARRAY:
    case N_TUPLE:
        if (!(r = jv_array(c, x->kind == N_ARRAY ? V_ARRAY : V_TUPLE, x->n))) break;
        for (int i = 0; i < x->n; i++)
            if (!(r->u.arr.items[i] = jeval(c, x->list[i], env))) {
                r = NULL;
                break;
            }
        break;
    case N_OBJECT: r = eval_object(c, x, env); break;
    case N_SELECT: {
        jv *t = jeval(c, x->b, env);
        if (t) r = jv_truthy(t) ? jeval(c, x->a, env) : c->undef;
        break;
    }
    case N_MACRO:
        if ((r = jv_fn(c, F_MACRO, NULL))) {
            r->u.fn.node = x;
            r->u.fn.env = env;
            if (scope_set(c, env, x->s, r)) r = NULL;
            else r = c->null;
        }
        break;
    case N_CALL_STMT: r = eval_call_stmt(c, x, env); break;
    case N_FILTER_STMT: {
        jv *body = render_string(c, x->list, x->n, env, x);
        if (body) r = jbuiltin_filter(c, body, x->a, env);
        break;
    }
    case N_COMMENT: r = c->null; break;
    case N_BREAK:
    case N_CONTINUE: RUN(c)->control = x->kind == N_BREAK ? CTRL_BREAK : CTRL_CONTINUE; break;
    case N_IF:
    case N_FOR:
    case N_SET: {
        jbuf b;
        jb_init(&b, &c->a, c->lim.max_output);
        jnode *one[1] = {(jnode *)x};
        if (!render_block(c, one, 1, env, &b) && !buf_check(c, &b, x)) r = x->kind == N_SET ? c->null : jv_str(c, jb_str(&b));
        break;
    }
    default: jfail(c, x, "Unknown node type");
    }
    c->depth--;
    return r;
}

/* ---- rendering ---------------------------------------------------------------------- */
jinja_limits jinja_default_limits(void) {
    jinja_limits l = {20000000ull, 100, (size_t)64 << 20, (size_t)256 << 20};
    return l;
}

static const char *const GLOBALS[] = {"false", "true", "none", "raise_exception", "range",
                                      "strftime_now", "True", "False", "None", "namespace"};

int jinja_render(const jinja_template *t, const cJSON *ctx, const jinja_limits *lim, char **out,
                 size_t *out_len, q35_error *err) {
    jrun run;
    memset(&run, 0, sizeof run);
    jctx *c = &run.c;
    c->t = t;
    c->err = err;
    c->lim = jinja_default_limits();
    if (lim) {
        if (lim->max_steps) c->lim.max_steps = lim->max_steps;
        if (lim->max_depth) c->lim.max_depth = lim->max_depth;
        if (lim->max_output) c->lim.max_output = lim->max_output;
        if (lim->max_memory) c->lim.max_memory = lim->max_memory;
    }
    c->a.limit = c->lim.max_memory;
    q35_error scratch;
    if (!c->err) c->err = &scratch;
    int rc = -1;
    jscope *root = NULL;
    if (!(c->undef = jv_new(c, V_UNDEF)) || !(c->null = jv_new(c, V_NULL)) || !(c->vtrue = jv_new(c, V_BOOL)) ||
        !(c->vfalse = jv_new(c, V_BOOL)) || !(root = scope_new(c, NULL)))
        goto done;
    c->vtrue->u.b = 1;
    jv *g[9] = {c->vfalse, c->vtrue, c->null, jv_fn(c, F_RAISE, NULL), jv_fn(c, F_RANGE, NULL),
                jv_fn(c, F_STRFTIME, NULL), c->vtrue, c->vfalse, c->null};
    for (int i = 0; i < 9; i++)
        if (!g[i] || scope_set(c, root, (jstr){GLOBALS[i], strlen(GLOBALS[i])}, g[i])) goto done;
    if (ctx && !cJSON_IsObject(ctx)) {
        jfail(c, NULL, "the context is not a JSON object");
        goto done;
    }
    for (const cJSON *e = ctx ? ctx->child : NULL; e; e = e->next) {
        jstr name;
        if (u8_sanitize(&c->a, e->string ? e->string : "", e->string ? strlen(e->string) : 0, &name)) {
            jnomem(c);
            goto done;
        }
        if (js_eqc(name, "namespace") || jmap_get(&root->vars, name)) {
            jfail(c, NULL, "Variable already declared: %.*s", (int)(name.n < 60 ? name.n : 60), name.p);
            goto done;
        }
        jv *v = jv_from_json(c, e);
        if (!v || scope_set(c, root, name, v)) goto done;
    }
    jbuf b;
    jb_init(&b, &c->a, c->lim.max_output);
    if (render_block(c, t->program->list, t->program->n, root, &b) || buf_check(c, &b, NULL)) {
        if (!c->failed) jfail(c, NULL, "break or continue outside a loop");
        goto done;
    }
    *out = malloc(b.n + 1);
    if (!*out) {
        q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", t->name);
        goto done;
    }
    if (b.n) memcpy(*out, b.p, b.n);
    (*out)[b.n] = '\0';
    *out_len = b.n;
    rc = 0;
done:
    if (rc && !c->failed) jnomem(c);
    ja_free(&c->a);
    return rc ? (c->err->code ? c->err->code : Q35_ERR_FORMAT) : 0;
}

int jinja_parse(jinja_template **out, const char *src, size_t len, const char *name, q35_error *err) {
    *out = NULL;
    jinja_template *t = calloc(1, sizeof *t);
    if (!t) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    snprintf(t->name, sizeof t->name, "%s", name && *name ? name : "template");
    jtok *toks;
    int n;
    int rc = 0;
    if (u8_sanitize(&t->arena, src ? src : "", src ? len : 0, &t->src))
        rc = q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", t->name);
    if (!rc) rc = jinja_lex(&t->arena, t->src, t->name, &toks, &n, err) ? (err ? err->code : Q35_ERR_FORMAT) : 0;
    if (!rc) rc = jinja_parse_tokens(t, toks, n, err) ? (err ? err->code : Q35_ERR_FORMAT) : 0;
    if (rc) {
        jinja_free(t);
        return rc ? rc : Q35_ERR_FORMAT;
    }
    *out = t;
    return 0;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    ja_free(&t->arena);
    free(t);
}
