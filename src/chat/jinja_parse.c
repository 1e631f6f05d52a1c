/* jinja_parse.c — tokens into an AST, following @huggingface/jinja's
 * recursive-descent parser rule for rule (what it accepts, this accepts;
 * what it rejects, this rejects). Nesting is bounded so that no input can
 * exhaust the stack. After parsing, each macro and call block is scanned
 * for the names caller, kwargs and varargs, as the reference does before
 * binding them.
 *
 * Node fields per kind:
 *   N_PROGRAM list=body          N_IF a=test list=body list2=alternate
 *   N_FOR a=loopvar b=iterable list=body list2=else
 *   N_SET a=assignee b=value|NULL list=body
 *   N_MACRO s=name list=parameters list2=body
 *   N_CALL_STMT a=call (N_CALL) list=body list2=caller parameters (n2 = -1: none)
 *   N_FILTER_STMT a=filter list=body
 *   N_MEMBER a=object b=property op=computed   N_CALL a=callee list=arguments
 *   N_IDENT/N_STRING s   N_INT/N_FLOAT num   N_ARRAY/N_TUPLE list
 *   N_OBJECT list=keys list2=values   N_BINARY op a b   N_UNARY op a
 *   N_FILTER a=operand b=filter (N_IDENT or N_CALL)   N_SELECT a=lhs b=test
 *   N_TEST a=operand s=test op=negate   N_SLICE a b c (each may be NULL)
 *   N_KWARG s=key a=value   N_SPREAD/N_KWSPREAD a   N_TERNARY a=cond b=true c=false
 *   N_COMMENT s */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja_internal.h"
#include "core/error.h"

#define MAX_NEST 256

typedef struct parser {
    jinja_template *t;
    jtok *tok;
    int n, cur;
    int depth;
    q35_error *err;
} parser;

static int pfail(parser *P, const char *fmt, const char *arg) {
    const jtok *k = &P->tok[P->cur < P->n ? P->cur : P->n - 1];
    char msg[300];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    return q35_fail(P->err, Q35_ERR_FORMAT, "%s:%d: %s", P->t->name, jinja_line(P->t->src, k->pos), msg);
}

static jnode *node(parser *P, int kind) {
    jnode *x = ja_alloc(&P->t->arena, sizeof *x);
    if (!x) {
        q35_fail(P->err, Q35_ERR_NOMEM, "%s: out of memory", P->t->name);
        return NULL;
    }
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->pos = P->tok[P->cur < P->n ? P->cur : P->n - 1].pos;
    return x;
}

/* growable node lists */
typedef struct nlist {
    jnode **v;
    int n, cap;
} nlist;

static int nl_push(parser *P, nlist *l, jnode *x) {
    if (!x) return -1;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 4;
        jnode **v = ja_alloc(&P->t->arena, (size_t)cap * sizeof *v);
        if (!v) return q35_fail(P->err, Q35_ERR_NOMEM, "%s: out of memory", P->t->name);
        if (l->n) memcpy(v, l->v, (size_t)l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 0;
}

static const jtok *peek(const parser *P, int k) {
    int i = P->cur + k;
    return i < P->n ? &P->tok[i] : &P->tok[P->n - 1]; /* T_EOF */
}

static int is(const parser *P, int type) { return peek(P, 0)->type == type; }
static int is_ident(const parser *P, int k, const char *name) {
    const jtok *t = peek(P, k);
    return t->type == T_IDENT && js_eqc(t->v, name);
}
static int is_stmt(const parser *P, const char *name) {
    return is(P, T_OPEN_STMT) && is_ident(P, 1, name);
}

static const char *TYPE_NAMES[] = {
    "Text", "NumericLiteral", "StringLiteral", "Identifier", "Equals", "OpenParen", "CloseParen",
    "OpenStatement", "CloseStatement", "OpenExpression", "CloseExpression", "OpenSquareBracket",
    "CloseSquareBracket", "OpenCurlyBracket", "CloseCurlyBracket", "Comma", "Dot", "Colon", "Pipe",
    "AdditiveBinaryOperator", "MultiplicativeBinaryOperator", "ExponentiationBinaryOperator",
    "ComparisonBinaryOperator", "UnaryOperator", "Comment", "end of template"};

static int expect(parser *P, int type, const char *what) {
    if (!is(P, type)) {
        char m[200];
        snprintf(m, sizeof m, "%s, got %s", what, TYPE_NAMES[peek(P, 0)->type]);
        return pfail(P, "%s", m);
    }
    P->cur++;
    return 0;
}

static int expect_ident(parser *P, const char *name) {
    if (!is_ident(P, 0, name)) return pfail(P, "Expected %s", name);
    P->cur++;
    return 0;
}

static int enter(parser *P) {
    if (++P->depth > MAX_NEST) return pfail(P, "the template nests deeper than 256 levels%s", NULL);
    return 0;
}

static jnode *parse_any(parser *P);
static jnode *parse_expression(parser *P);
static jnode *parse_primary(parser *P);
static jnode *parse_member(parser *P, jnode *object);
static jnode *parse_call(parser *P, jnode *callee);
static int parse_args(parser *P, int params, nlist *out);

/* statements until one of the names opens a statement */
static int parse_body(parser *P, nlist *body, const char *a, const char *b, const char *c) {
    while (!(is_stmt(P, a) || (b && is_stmt(P, b)) || (c && is_stmt(P, c)))) {
        if (is(P, T_EOF)) return pfail(P, "Unexpected end of template: missing {%% %s %%}", a);
        if (nl_push(P, body, parse_any(P))) return -1;
    }
    return 0;
}

static jnode *parse_sequence(parser *P, int primary) {
    jnode *first = primary ? parse_primary(P) : parse_expression(P);
    if (!first) return NULL;
    if (!is(P, T_COMMA)) return first;
    jnode *tup = node(P, N_TUPLE);
    nlist l = {0};
    if (!tup || nl_push(P, &l, first)) return NULL;
    while (is(P, T_COMMA)) {
        P->cur++;
        if (nl_push(P, &l, primary ? parse_primary(P) : parse_expression(P))) return NULL;
    }
    tup->list = l.v;
    tup->n = l.n;
    return tup;
}

static jnode *parse_set(parser *P) {
    jnode *s = node(P, N_SET);
    if (!s || !(s->a = parse_sequence(P, 0))) return NULL;
    nlist body = {0};
    if (is(P, T_EQUALS)) {
        P->cur++;
        if (!(s->b = parse_sequence(P, 0))) return NULL;
    } else {
        if (expect(P, T_CLOSE_STMT, "Expected %} token") || parse_body(P, &body, "endset", NULL, NULL) ||
            expect(P, T_OPEN_STMT, "Expected {% token") || expect_ident(P, "endset"))
            return NULL;
    }
    if (expect(P, T_CLOSE_STMT, "Expected closing statement token")) return NULL;
    s->list = body.v;
    s->n = body.n;
    return s;
}

static jnode *parse_if(parser *P) {
    if (enter(P)) return NULL;
    jnode *s = node(P, N_IF);
    if (!s || !(s->a = parse_expression(P)) || expect(P, T_CLOSE_STMT, "Expected closing statement token"))
        return NULL;
    nlist body = {0}, alt = {0};
    if (parse_body(P, &body, "elif", "else", "endif")) return NULL;
    if (is_stmt(P, "elif")) {
        P->cur += 2;
        if (nl_push(P, &alt, parse_if(P))) return NULL;
    } else if (is_stmt(P, "else")) {
        P->cur += 2;
        if (expect(P, T_CLOSE_STMT, "Expected closing statement token") ||
            parse_body(P, &alt, "endif", NULL, NULL))
            return NULL;
    }
    s->list = body.v;
    s->n = body.n;
    s->list2 = alt.v;
    s->n2 = alt.n;
    P->depth--;
    return s;
}

static jnode *parse_macro(parser *P) {
    jnode *s = node(P, N_MACRO), *name = parse_primary(P);
    if (!s || !name) return NULL;
    if (name->kind != N_IDENT) {
        pfail(P, "Expected identifier following macro statement%s", NULL);
        return NULL;
    }
    s->s = name->s;
    nlist params = {0}, body = {0};
    if (parse_args(P, 1, &params) || expect(P, T_CLOSE_STMT, "Expected closing statement token") ||
        parse_body(P, &body, "endmacro", NULL, NULL))
        return NULL;
    s->list = params.v;
    s->n = params.n;
    s->list2 = body.v;
    s->n2 = body.n;
    return s;
}

static jnode *parse_for(parser *P) {
    jnode *s = node(P, N_FOR);
    if (!s || !(s->a = parse_sequence(P, 1))) return NULL;
    if (s->a->kind != N_IDENT && s->a->kind != N_TUPLE) {
        pfail(P, "Expected identifier/tuple for the loop variable%s", NULL);
        return NULL;
    }
    if (!is_ident(P, 0, "in")) {
        pfail(P, "Expected `in` keyword following loop variable%s", NULL);
        return NULL;
    }
    P->cur++;
    if (!(s->b = parse_expression(P)) || expect(P, T_CLOSE_STMT, "Expected closing statement token"))
        return NULL;
    nlist body = {0}, alt = {0};
    if (parse_body(P, &body, "endfor", "else", NULL)) return NULL;
    if (is_stmt(P, "else")) {
        P->cur += 2;
        if (expect(P, T_CLOSE_STMT, "Expected closing statement token") ||
            parse_body(P, &alt, "endfor", NULL, NULL))
            return NULL;
    }
    s->list = body.v;
    s->n = body.n;
    s->list2 = alt.v;
    s->n2 = alt.n;
    return s;
}

static jnode *parse_call_stmt(parser *P) {
    jnode *s = node(P, N_CALL_STMT);
    if (!s) return NULL;
    nlist cargs = {0}, args = {0}, body = {0};
    s->n2 = -1;
    if (is(P, T_LPAREN)) {
        if (parse_args(P, 1, &cargs)) return NULL;
        s->list2 = cargs.v;
        s->n2 = cargs.n;
    }
    jnode *callee = parse_primary(P);
    if (!callee) return NULL;
    if (callee->kind != N_IDENT) {
        pfail(P, "Expected identifier following call statement%s", NULL);
        return NULL;
    }
    jnode *call = node(P, N_CALL);
    if (!call || parse_args(P, 0, &args) || expect(P, T_CLOSE_STMT, "Expected closing statement token") ||
        parse_body(P, &body, "endcall", NULL, NULL) || expect(P, T_OPEN_STMT, "Expected '{%'") ||
        expect_ident(P, "endcall") || expect(P, T_CLOSE_STMT, "Expected closing statement token"))
        return NULL;
    call->a = callee;
    call->list = args.v;
    call->n = args.n;
    s->a = call;
    s->list = body.v;
    s->n = body.n;
    return s;
}

static jnode *parse_filter_stmt(parser *P) {
    jnode *s = node(P, N_FILTER_STMT), *f = parse_primary(P);
    if (!s || !f) return NULL;
    if (f->kind == N_IDENT && is(P, T_LPAREN) && !(f = parse_call(P, f))) return NULL;
    nlist body = {0};
    if (expect(P, T_CLOSE_STMT, "Expected closing statement token") ||
        parse_body(P, &body, "endfilter", NULL, NULL) || expect(P, T_OPEN_STMT, "Expected '{%'") ||
        expect_ident(P, "endfilter") || expect(P, T_CLOSE_STMT, "Expected '%}'"))
        return NULL;
    s->a = f;
    s->list = body.v;
    s->n = body.n;
    return s;
}

static jnode *end_block(parser *P, jnode *s, const char *end) {
    if (!s || expect(P, T_OPEN_STMT, "Expected {% token") || expect_ident(P, end) ||
        expect(P, T_CLOSE_STMT, "Expected %} token"))
        return NULL;
    return s;
}

static jnode *parse_statement(parser *P) {
    if (expect(P, T_OPEN_STMT, "Expected opening statement token")) return NULL;
    if (!is(P, T_IDENT)) {
        pfail(P, "Unknown statement, got %s", TYPE_NAMES[peek(P, 0)->type]);
        return NULL;
    }
    jstr name = peek(P, 0)->v;
    P->cur++;
    if (js_eqc(name, "set")) return parse_set(P);
    if (js_eqc(name, "if")) return end_block(P, parse_if(P), "endif");
    if (js_eqc(name, "macro")) return end_block(P, parse_macro(P), "endmacro");
    if (js_eqc(name, "for")) return end_block(P, parse_for(P), "endfor");
    if (js_eqc(name, "call")) return parse_call_stmt(P);
    if (js_eqc(name, "filter")) return parse_filter_stmt(P);
    if (js_eqc(name, "break") || js_eqc(name, "continue")) {
        jnode *s = node(P, js_eqc(name, "break") ? N_BREAK : N_CONTINUE);
        if (!s || expect(P, T_CLOSE_STMT, "Expected closing statement token")) return NULL;
        return s;
    }
    char nm[64];
    snprintf(nm, sizeof nm, "%.*s", (int)(name.n < 60 ? name.n : 60), name.p);
    P->cur--;
    pfail(P, "Unknown statement type: %s", nm);
    return NULL;
}

static jnode *parse_any(parser *P) {
    if (enter(P)) return NULL;
    const jtok *k = peek(P, 0);
    jnode *x = NULL;
    switch (k->type) {
    case T_COMMENT:
        if ((x = node(P, N_COMMENT))) x->s = k->v;
        P->cur++;
        break;
    case T_TEXT:
        if ((x = node(P, N_STRING))) x->s = k->v;
        P->cur++;
        break;
    case T_OPEN_STMT: x = parse_statement(P); break;
    case T_OPEN_EXPR:
        P->cur++;
        x = parse_expression(P);
        if (x && expect(P, T_CLOSE_EXPR, "Expected closing expression token")) x = NULL;
        break;
    default: pfail(P, "Unexpected token type: %s", TYPE_NAMES[k->type]);
    }
    P->depth--;
    return x;
}

/* ---- expressions ------------------------------------------------------------------ */
static jnode *binary(parser *P, int op, jnode *l, jnode *r, size_t pos) {
    if (!l || !r) return NULL;
    jnode *b = node(P, N_BINARY);
    if (!b) return NULL;
    b->op = op;
    b->a = l;
    b->b = r;
    b->pos = pos;
    return b;
}

static jnode *parse_or(parser *P);

static jnode *parse_if_expr(parser *P) {
    if (enter(P)) return NULL;
    jnode *a = parse_or(P);
    if (a && is_ident(P, 0, "if")) {
        P->cur++;
        jnode *test = parse_or(P), *x;
        if (!test) return NULL;
        if (is_ident(P, 0, "else")) {
            P->cur++;
            jnode *f = parse_if_expr(P);
            if (!f || !(x = node(P, N_TERNARY))) return NULL;
            x->a = test;
            x->b = a;
            x->c = f;
        } else {
            if (!(x = node(P, N_SELECT))) return NULL;
            x->a = a;
            x->b = test;
        }
        a = x;
    }
    P->depth--;
    return a;
}

static jnode *parse_expression(parser *P) { return parse_if_expr(P); }

/* a chain of `and` or `or` */
static jnode *parse_logic(parser *P, jnode *(*sub)(parser *), const char *word, int op) {
    jnode *l = sub(P);
    int levels = 0;
    while (l && is_ident(P, 0, word)) {
        if (enter(P)) return NULL;
        levels++;
        size_t pos = peek(P, 0)->pos;
        P->cur++;
        l = binary(P, op, l, sub(P), pos);
    }
    P->depth -= levels;
    return l;
}

static jnode *parse_not(parser *P);
static jnode *parse_and(parser *P) { return parse_logic(P, parse_not, "and", OP_AND); }
static jnode *parse_or(parser *P) { return parse_logic(P, parse_and, "or", OP_OR); }

static jnode *parse_comparison(parser *P);
static jnode *parse_not(parser *P) {
    if (!is_ident(P, 0, "not")) return parse_comparison(P);
    if (enter(P)) return NULL;
    P->cur++;
    jnode *arg = parse_not(P), *x = arg ? node(P, N_UNARY) : NULL;
    if (!x) return NULL;
    x->op = OP_NOT;
    x->a = arg;
    P->depth--;
    return x;
}

static jnode *parse_additive(parser *P);
static jnode *parse_comparison(parser *P) {
    jnode *l = parse_additive(P);
    int levels = 0;
    while (l) {
        int op;
        size_t pos = peek(P, 0)->pos;
        if (is_ident(P, 0, "not") && is_ident(P, 1, "in")) {
            op = OP_NOT_IN;
            P->cur += 2;
        } else if (is_ident(P, 0, "in")) {
            op = OP_IN;
            P->cur++;
        } else if (is(P, T_CMP)) {
            jstr v = peek(P, 0)->v;
            op = js_eqc(v, "==") ? OP_EQ : js_eqc(v, "!=") ? OP_NE : js_eqc(v, "<") ? OP_LT
               : js_eqc(v, ">") ? OP_GT : js_eqc(v, "<=") ? OP_LE : OP_GE;
            P->cur++;
        } else break;
        if (enter(P)) return NULL;
        levels++;
        l = binary(P, op, l, parse_additive(P), pos);
    }
    P->depth -= levels;
    return l;
}

static jnode *parse_multiplicative(parser *P);
static jnode *parse_additive(parser *P) {
    jnode *l = parse_multiplicative(P);
    int levels = 0;
    while (l && is(P, T_ADD)) {
        if (enter(P)) return NULL;
        levels++;
        jstr v = peek(P, 0)->v;
        size_t pos = peek(P, 0)->pos;
        P->cur++;
        l = binary(P, v.p[0] == '+' ? OP_ADD : v.p[0] == '-' ? OP_SUB : OP_CONCAT, l,
                   parse_multiplicative(P), pos);
    }
    P->depth -= levels;
    return l;
}

static jnode *parse_power(parser *P);
static jnode *parse_multiplicative(parser *P) {
    jnode *l = parse_power(P);
    int levels = 0;
    while (l && is(P, T_MUL)) {
        if (enter(P)) return NULL;
        levels++;
        jstr v = peek(P, 0)->v;
        size_t pos = peek(P, 0)->pos;
        P->cur++;
        int op = js_eqc(v, "*") ? OP_MUL : js_eqc(v, "/") ? OP_DIV : js_eqc(v, "//") ? OP_FLOORDIV : OP_MOD;
        l = binary(P, op, l, parse_power(P), pos);
    }
    P->depth -= levels;
    return l;
}

static jnode *parse_test(parser *P);
static jnode *parse_power(parser *P) {
    jnode *l = parse_test(P);
    int levels = 0;
    while (l && is(P, T_POW)) {
        if (enter(P)) return NULL;
        levels++;
        size_t pos = peek(P, 0)->pos;
        P->cur++;
        l = binary(P, OP_POW, l, parse_test(P), pos);
    }
    P->depth -= levels;
    return l;
}

static jnode *parse_filter(parser *P);
static jnode *parse_test(parser *P) {
    jnode *operand = parse_filter(P);
    int levels = 0;
    while (operand && is_ident(P, 0, "is")) {
        if (enter(P)) return NULL;
        levels++;
        P->cur++;
        int negate = is_ident(P, 0, "not");
        if (negate) P->cur++;
        jnode *t = parse_primary(P), *x;
        if (!t) return NULL;
        if (t->kind != N_IDENT) {
            pfail(P, "Expected identifier for the test%s", NULL);
            return NULL;
        }
        if (!(x = node(P, N_TEST))) return NULL;
        x->a = operand;
        x->op = negate;
        x->s = t->s;
        x->pos = t->pos;
        operand = x;
    }
    P->depth -= levels;
    return operand;
}

static jnode *parse_unary(parser *P);
static jnode *parse_filter(parser *P) {
    jnode *operand = parse_unary(P);
    int levels = 0;
    while (operand && is(P, T_PIPE)) {
        if (enter(P)) return NULL;
        levels++;
        P->cur++;
        jnode *f = parse_primary(P), *x;
        if (!f) return NULL;
        if (f->kind != N_IDENT) {
            pfail(P, "Expected identifier for the filter%s", NULL);
            return NULL;
        }
        if (is(P, T_LPAREN) && !(f = parse_call(P, f))) return NULL;
        if (!(x = node(P, N_FILTER))) return NULL;
        x->a = operand;
        x->b = f;
        x->pos = f->pos;
        operand = x;
    }
    P->depth -= levels;
    return operand;
}

static jnode *parse_unary(parser *P) {
    const jtok *k = peek(P, 0);
    if ((k->type == T_UNARY || k->type == T_ADD) && k->v.n == 1 && (k->v.p[0] == '-' || k->v.p[0] == '+')) {
        if (enter(P)) return NULL;
        int minus = k->v.p[0] == '-';
        P->cur++;
        jnode *arg = parse_unary(P), *x = arg ? node(P, N_UNARY) : NULL;
        if (!x) return NULL;
        x->op = minus ? OP_SUB : OP_ADD;
        x->a = arg;
        P->depth--;
        return x;
    }
    jnode *m = parse_member(P, parse_primary(P));
    if (m && is(P, T_LPAREN)) return parse_call(P, m);
    return m;
}

static jnode *parse_call(parser *P, jnode *callee) {
    if (!callee || enter(P)) return NULL;
    jnode *x = node(P, N_CALL);
    nlist args = {0};
    if (!x || parse_args(P, 0, &args)) return NULL;
    x->a = callee;
    x->list = args.v;
    x->n = args.n;
    x->pos = callee->pos;
    x = parse_member(P, x);
    if (x && is(P, T_LPAREN)) x = parse_call(P, x);
    P->depth--;
    return x;
}

/* params: a macro's or call block's parameter list */
static int parse_args(parser *P, int params, nlist *out) {
    if (expect(P, T_LPAREN, "Expected opening parenthesis for arguments list")) return -1;
    int saw_kw = 0, saw_spread = 0;
    nlist names = {0};
    while (!is(P, T_RPAREN)) {
        if (is(P, T_EOF)) return pfail(P, "Unexpected end of template in an argument list%s", NULL);
        int kwspread = is(P, T_POW), spread = is(P, T_MUL) && js_eqc(peek(P, 0)->v, "*");
        if (params && (kwspread || spread))
            return pfail(P, "Argument unpacking is not allowed in parameter declarations%s", NULL);
        if (kwspread) {
            P->cur++;
            jnode *x = node(P, N_KWSPREAD);
            if (!x || !(x->a = parse_expression(P)) || nl_push(P, out, x)) return -1;
            if (is(P, T_COMMA)) P->cur++;
            if (!is(P, T_RPAREN))
                return pfail(P, "Expected closing parenthesis: `**` must be applied to the final argument%s", NULL);
            break;
        }
        jnode *arg;
        if (spread) {
            if (saw_spread) return pfail(P, "Only one `*` argument unpacking is allowed%s", NULL);
            saw_spread = 1;
            P->cur++;
            if (!(arg = node(P, N_SPREAD)) || !(arg->a = parse_expression(P))) return -1;
        } else {
            if (!(arg = parse_expression(P))) return -1;
            if (is(P, T_EQUALS)) {
                P->cur++;
                if (arg->kind != N_IDENT)
                    return pfail(P, params ? "Expected identifier for parameter declaration%s"
                                           : "Expected identifier for keyword argument%s", NULL);
                jnode *kw = node(P, N_KWARG);
                if (!kw || !(kw->a = parse_expression(P))) return -1;
                kw->s = arg->s;
                kw->pos = arg->pos;
                arg = kw;
            }
            if (params) {
                if (arg->kind != N_IDENT && arg->kind != N_KWARG)
                    return pfail(P, "Expected identifier for parameter declaration%s", NULL);
                for (int i = 0; i < names.n; i++)
                    if (js_eq(names.v[i]->s, arg->s)) return pfail(P, "Duplicate parameter name%s", NULL);
                if (nl_push(P, &names, arg)) return -1;
            }
            if (arg->kind == N_KWARG) saw_kw = 1;
            else if (saw_kw)
                return pfail(P, params ? "Non-default argument follows default argument%s"
                                       : "Positional arguments must come before keyword arguments%s", NULL);
            else if (saw_spread)
                return pfail(P, "Positional arguments must not follow `*` argument unpacking%s", NULL);
        }
        if (nl_push(P, out, arg)) return -1;
        if (is(P, T_COMMA)) P->cur++;
    }
    return expect(P, T_RPAREN, "Expected closing parenthesis for arguments list");
}

static jnode *parse_subscript(parser *P) {
    jnode *sl[3] = {NULL, NULL, NULL};
    int n = 0, is_slice = 0;
    while (!is(P, T_RBRACKET)) {
        if (is(P, T_EOF)) {
            pfail(P, "Unexpected end of template in a subscript%s", NULL);
            return NULL;
        }
        jnode *x = NULL;
        if (is(P, T_COLON)) {
            P->cur++;
            is_slice = 1;
        } else {
            if (!(x = parse_expression(P))) return NULL;
            if (is(P, T_COLON)) {
                P->cur++;
                is_slice = 1;
            }
        }
        if (n == 3) { /* only a slice may have more than one part, and at most 3 */
            if (is_slice) {
                pfail(P, "Expected 0-3 arguments for slice expression%s", NULL);
                return NULL;
            }
            continue;
        }
        sl[n++] = x;
    }
    if (n == 0) {
        pfail(P, "Expected at least one argument for member/slice expression%s", NULL);
        return NULL;
    }
    if (!is_slice) return sl[0];
    jnode *s = node(P, N_SLICE);
    if (!s) return NULL;
    s->a = sl[0];
    s->b = sl[1];
    s->c = sl[2];
    return s;
}

static jnode *parse_member(parser *P, jnode *object) {
    int levels = 0;
    while (object && (is(P, T_DOT) || is(P, T_LBRACKET))) {
        if (enter(P)) return NULL;
        levels++;
        int computed = is(P, T_LBRACKET);
        P->cur++;
        jnode *prop, *m;
        if (computed) {
            if (!(prop = parse_subscript(P)) || expect(P, T_RBRACKET, "Expected closing square bracket"))
                return NULL;
        } else {
            if (!(prop = parse_primary(P))) return NULL;
            if (prop->kind != N_IDENT && prop->kind != N_INT) {
                pfail(P, "Expected identifier or integer following dot operator%s", NULL);
                return NULL;
            }
        }
        if (!(m = node(P, N_MEMBER))) return NULL;
        m->a = object;
        m->b = prop;
        m->op = computed;
        m->pos = object->pos;
        object = m;
    }
    P->depth -= levels;
    return object;
}

static jnode *parse_primary(parser *P) {
    if (enter(P)) return NULL;
    const jtok *k = peek(P, 0);
    jnode *x = NULL;
    if (k->type != T_EOF) P->cur++;
    switch (k->type) {
    case T_NUMBER: {
        int is_float = memchr(k->v.p, '.', k->v.n) != NULL;
        if (!(x = node(P, is_float ? N_FLOAT : N_INT))) break;
        char buf[64];
        if (k->v.n >= sizeof buf) { /* a long run of digits: strtod needs it whole */
            char *tmp = malloc(k->v.n + 1);
            if (!tmp) {
                x = NULL;
                q35_fail(P->err, Q35_ERR_NOMEM, "%s: out of memory", P->t->name);
                break;
            }
            memcpy(tmp, k->v.p, k->v.n);
            tmp[k->v.n] = '\0';
            x->num = strtod(tmp, NULL);
            free(tmp);
        } else {
            memcpy(buf, k->v.p, k->v.n);
            buf[k->v.n] = '\0';
            x->num = strtod(buf, NULL);
        }
        x->pos = k->pos;
        break;
    }
    case T_STRING: {
        if (!(x = node(P, N_STRING))) break;
        x->pos = k->pos;
        if (!is(P, T_STRING)) {
            x->s = k->v;
            break;
        }
        jbuf b; /* adjacent literals are one string */
        jb_init(&b, &P->t->arena, 0);
        jb_adds(&b, k->v);
        while (is(P, T_STRING)) jb_adds(&b, P->tok[P->cur++].v);
        if (b.failed) {
            q35_fail(P->err, Q35_ERR_NOMEM, "%s: out of memory", P->t->name);
            x = NULL;
        } else x->s = jb_str(&b);
        break;
    }
    case T_IDENT:
        if ((x = node(P, N_IDENT))) {
            x->s = k->v;
            x->pos = k->pos;
        }
        break;
    case T_LPAREN:
        x = parse_sequence(P, 0);
        if (x && expect(P, T_RPAREN, "Expected closing parenthesis")) x = NULL;
        break;
    case T_LBRACKET: {
        nlist l = {0};
        if (!(x = node(P, N_ARRAY))) break;
        x->pos = k->pos;
        while (x && !is(P, T_RBRACKET)) {
            if (is(P, T_EOF)) {
                pfail(P, "Unexpected end of template in a list%s", NULL);
                x = NULL;
            } else if (nl_push(P, &l, parse_expression(P))) x = NULL;
            else if (is(P, T_COMMA)) P->cur++;
        }
        if (x) {
            P->cur++;
            x->list = l.v;
            x->n = l.n;
        }
        break;
    }
    case T_LBRACE: {
        nlist keys = {0}, vals = {0};
        if (!(x = node(P, N_OBJECT))) break;
        x->pos = k->pos;
        while (x && !is(P, T_RBRACE)) {
            if (is(P, T_EOF)) {
                pfail(P, "Unexpected end of template in a mapping%s", NULL);
                x = NULL;
            } else if (nl_push(P, &keys, parse_expression(P)) ||
                       expect(P, T_COLON, "Expected colon between key and value in object literal") ||
                       nl_push(P, &vals, parse_expression(P)))
                x = NULL;
            else if (is(P, T_COMMA)) P->cur++;
        }
        if (x) {
            P->cur++;
            x->list = keys.v;
            x->n = keys.n;
            x->list2 = vals.v;
            x->n2 = vals.n;
        }
        break;
    }
    default: pfail(P, "Unexpected token: %s", TYPE_NAMES[k->type]);
    }
    P->depth--;
    return x;
}

/* ---- caller / kwargs / varargs: which a macro body reads ------------------------------ */
typedef struct scan {
    unsigned declared, accessed;
} scan;

static unsigned special_bit(jstr name) {
    if (js_eqc(name, "caller")) return J_USES_CALLER;
    if (js_eqc(name, "kwargs")) return J_USES_KWARGS;
    if (js_eqc(name, "varargs")) return J_USES_VARARGS;
    return 0;
}

static void declare_target(scan *S, const jnode *t) {
    if (!t) return;
    if (t->kind == N_IDENT) S->declared |= special_bit(t->s);
    else if (t->kind == N_TUPLE)
        for (int i = 0; i < t->n; i++) declare_target(S, t->list[i]);
}

static void visit(scan *S, const jnode *x);
static void visit_list(scan *S, jnode *const *l, int n) {
    for (int i = 0; i < n; i++) visit(S, l[i]);
}

static void declare_params(scan *S, jnode *const *params, int n) {
    for (int i = 0; i < n; i++) S->declared |= special_bit(params[i]->s);
}

static void visit_defaults(scan *S, jnode *const *params, int n) {
    for (int i = 0; i < n; i++)
        if (params[i]->kind == N_KWARG) visit(S, params[i]->a);
}

static void visit_filter(scan *S, const jnode *f) {
    if (f && f->kind == N_CALL) visit_list(S, f->list, f->n);
}

static void visit(scan *S, const jnode *x) {
    if (!x) return;
    switch (x->kind) {
    case N_FOR:
        declare_target(S, x->a);
        if (x->b->kind == N_SELECT) {
            visit(S, x->b->a);
            visit_list(S, x->list, x->n);
            visit_list(S, x->list2, x->n2);
            visit(S, x->b->b);
            return;
        }
        visit(S, x->b);
        visit_list(S, x->list, x->n);
        visit_list(S, x->list2, x->n2);
        return;
    case N_SET:
        declare_target(S, x->a);
        visit(S, x->b);
        visit_list(S, x->list, x->n);
        return;
    case N_MACRO:
        declare_params(S, x->list, x->n);
        visit_defaults(S, x->list, x->n);
        visit_list(S, x->list2, x->n2);
        return;
    case N_CALL_STMT:
        visit(S, x->a);
        if (x->n2 > 0) {
            declare_params(S, x->list2, x->n2);
            visit_defaults(S, x->list2, x->n2);
        }
        visit_list(S, x->list, x->n);
        return;
    case N_FILTER_STMT:
        visit_list(S, x->list, x->n);
        visit_filter(S, x->a);
        return;
    case N_IDENT: {
        unsigned bit = special_bit(x->s);
        if (bit && !(S->declared & bit)) S->accessed |= bit;
        return;
    }
    case N_MEMBER:
        visit(S, x->a);
        if (x->op) visit(S, x->b);
        return;
    case N_FILTER:
        visit(S, x->a);
        visit_filter(S, x->b);
        return;
    case N_TEST: visit(S, x->a); return;
    case N_SELECT:
        visit(S, x->b);
        visit(S, x->a);
        return;
    case N_KWARG: visit(S, x->a); return;
    case N_IF:
        visit(S, x->a);
        visit_list(S, x->list, x->n);
        visit_list(S, x->list2, x->n2);
        return;
    case N_TERNARY:
        visit(S, x->a);
        visit(S, x->b);
        visit(S, x->c);
        return;
    case N_CALL:
        visit(S, x->a);
        visit_list(S, x->list, x->n);
        return;
    case N_BINARY:
        visit(S, x->a);
        visit(S, x->b);
        return;
    case N_UNARY:
    case N_SPREAD:
    case N_KWSPREAD: visit(S, x->a); return;
    case N_SLICE:
        visit(S, x->a);
        visit(S, x->b);
        visit(S, x->c);
        return;
    case N_ARRAY:
    case N_TUPLE:
    case N_PROGRAM: visit_list(S, x->list, x->n); return;
    case N_OBJECT:
        for (int i = 0; i < x->n; i++) {
            visit(S, x->list[i]);
            visit(S, x->list2[i]);
        }
        return;
    default: return;
    }
}

/* sets ->uses on every macro and call block below x */
static void mark_uses(jnode *x, int depth) {
    if (!x || depth > 4 * MAX_NEST) return;
    if (x->kind == N_MACRO || x->kind == N_CALL_STMT) {
        scan S = {0, 0};
        jnode *const *params = x->kind == N_MACRO ? x->list : x->list2;
        int np = x->kind == N_MACRO ? x->n : (x->n2 > 0 ? x->n2 : 0);
        declare_params(&S, params, np);
        if (x->kind == N_MACRO) visit_list(&S, x->list2, x->n2);
        else visit_list(&S, x->list, x->n);
        x->uses = S.accessed;
    }
    mark_uses(x->a, depth + 1);
    mark_uses(x->b, depth + 1);
    mark_uses(x->c, depth + 1);
    for (int i = 0; i < x->n; i++) mark_uses(x->list[i], depth + 1);
    for (int i = 0; i < x->n2; i++) mark_uses(x->list2[i], depth + 1);
}

int jinja_parse_tokens(jinja_template *t, jtok *toks, int n, q35_error *err) {
    parser P = {t, toks, n, 0, 0, err};
    jnode *prog = node(&P, N_PROGRAM);
    nlist body = {0};
    if (!prog) return -1;
    while (!is(&P, T_EOF))
        if (nl_push(&P, &body, parse_any(&P))) return -1;
    prog->list = body.v;
    prog->n = body.n;
    mark_uses(prog, 0);
    t->program = prog;
    return 0;
}
