/* jinja_internal.h — what the interpreter's files share: the arena, UTF-8
 * strings, tokens and AST nodes (jinja_lex.c, jinja_parse.c), values
 * (jinja_value.c), and the evaluator's state (jinja_eval.c, with the
 * filters, tests and methods of jinja_builtin.c). */
#ifndef Q35_CHAT_JINJA_INTERNAL_H
#define Q35_CHAT_JINJA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "chat/jinja.h"

/* ---- arena: everything of a parse or a render lives and dies together -- */
typedef struct jchunk jchunk;
typedef struct jarena {
    jchunk *head;
    size_t used;   /* bytes handed out, all chunks */
    size_t limit;  /* 0: none */
} jarena;

/* NULL when the limit is reached or malloc fails. */
void *ja_alloc(jarena *a, size_t n);
void ja_free(jarena *a);

/* ---- strings: bytes with a length, valid UTF-8 inside the interpreter -- */
typedef struct jstr {
    const char *p;
    size_t n;
} jstr;

#define JSTR(lit) ((jstr){lit, sizeof(lit) - 1})
int js_eq(jstr a, jstr b);
int js_eqc(jstr a, const char *c);

/* A growable byte buffer in an arena (old blocks are left to the arena:
 * at most as much again as the final size). */
typedef struct jbuf {
    jarena *a;
    char *p;
    size_t n, cap;
    size_t max;  /* longest allowed; 0: none */
    int failed;  /* 1: out of memory, 2: over max */
} jbuf;

void jb_init(jbuf *b, jarena *a, size_t max);
void jb_add(jbuf *b, const char *s, size_t n);
void jb_adds(jbuf *b, jstr s);
void jb_addc(jbuf *b, const char *s);
void jb_addch(jbuf *b, char c);
void jb_add_cp(jbuf *b, uint32_t cp);   /* UTF-8 of a code point */
jstr jb_str(const jbuf *b);

/* UTF-8: decodes the code point at s[*i] (valid UTF-8 assumed), advancing *i. */
uint32_t u8_next(const char *s, size_t n, size_t *i);
/* The code point ending just before s[i] and where it starts. */
uint32_t u8_prev(const char *s, size_t i, size_t *start);
/* JavaScript's white space and line terminators (String.prototype.trim, \s). */
int js_space(uint32_t cp);
/* Copies len bytes into the arena replacing invalid UTF-8 as the WHATWG
 * decoder does (each maximal invalid subpart by U+FFFD). */
int u8_sanitize(jarena *a, const char *s, size_t len, jstr *out);
/* Length in UTF-16 units (JavaScript's .length). */
size_t u16_len(jstr s);

/* ---- tokens -------------------------------------------------------------- */
enum jtok_type {
    T_TEXT, T_NUMBER, T_STRING, T_IDENT, T_EQUALS, T_LPAREN, T_RPAREN, T_OPEN_STMT,
    T_CLOSE_STMT, T_OPEN_EXPR, T_CLOSE_EXPR, T_LBRACKET, T_RBRACKET, T_LBRACE, T_RBRACE,
    T_COMMA, T_DOT, T_COLON, T_PIPE, T_ADD, T_MUL, T_POW, T_CMP, T_UNARY, T_COMMENT,
    T_EOF
};

typedef struct jtok {
    int type;
    jstr v;      /* the raw value (a string literal's content, unescaped) */
    size_t pos;  /* offset in the source as given */
} jtok;

/* Preprocesses and tokenizes src (valid UTF-8). *toks (in a) ends with a
 * T_EOF token. err names line numbers of src. */
int jinja_lex(jarena *a, jstr src, const char *name, jtok **toks, int *n, q35_error *err);
/* 1-based line of byte offset pos in src. */
int jinja_line(jstr src, size_t pos);

/* ---- AST ----------------------------------------------------------------- */
enum jnode_kind {
    /* statements */
    N_PROGRAM, N_IF, N_FOR, N_BREAK, N_CONTINUE, N_SET, N_MACRO, N_COMMENT, N_CALL_STMT,
    N_FILTER_STMT,
    /* expressions */
    N_MEMBER, N_CALL, N_IDENT, N_INT, N_FLOAT, N_STRING, N_ARRAY, N_TUPLE, N_OBJECT,
    N_BINARY, N_FILTER, N_SELECT, N_TEST, N_UNARY, N_SLICE, N_KWARG, N_SPREAD, N_KWSPREAD,
    N_TERNARY
};

enum jop {
    OP_NONE, OP_AND, OP_OR, OP_NOT, OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_IN,
    OP_NOT_IN, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT
};

/* macro/call-block bodies that read these names get them bound */
#define J_USES_CALLER 1u
#define J_USES_KWARGS 2u
#define J_USES_VARARGS 4u

typedef struct jnode jnode;
struct jnode {
    int kind;
    int op;          /* enum jop (binary, unary); N_TEST, N_MEMBER: negate / computed */
    unsigned uses;   /* N_MACRO, N_CALL_STMT: J_USES_* */
    jstr s;          /* identifier, string literal, test/filter name */
    double num;      /* N_INT, N_FLOAT */
    size_t pos;      /* source offset, for errors */
    jnode *a, *b, *c;          /* children (see jinja_parse.c per kind) */
    jnode **list;  int n;      /* body, arguments, elements, object keys */
    jnode **list2; int n2;     /* alternate, else block, object values, caller args */
};

struct jinja_template {
    jarena arena;
    jstr src;        /* the source as given (sanitized) */
    char name[128];
    jnode *program;
};

/* Parses tokens into t->program (in t->arena). */
int jinja_parse_tokens(jinja_template *t, jtok *toks, int n, q35_error *err);

/* ---- values -------------------------------------------------------------- */
enum jv_kind {
    V_UNDEF, V_NULL, V_BOOL, V_INT, V_FLOAT, V_STR, V_ARRAY, V_TUPLE, V_OBJECT, V_KWARGS,
    V_NAMESPACE, V_FUNC
};

/* functions: globals, methods bound to a value, macros and call blocks */
enum jfn {
    F_RAISE, F_RANGE, F_STRFTIME, F_NAMESPACE, F_MACRO, F_CALLER,
    M_UPPER, M_LOWER, M_STRIP, M_TITLE, M_CAPITALIZE, M_RSTRIP, M_LSTRIP, M_STARTSWITH,
    M_ENDSWITH, M_SPLIT, M_REPLACE, M_GET, M_ITEMS, M_KEYS, M_VALUES, M_DICTSORT
};

typedef struct jv jv;
typedef struct jscope jscope;

typedef struct jmap {
    jstr *keys;
    jv **vals;
    int n, cap;
    int *index;      /* open addressing over keys once n > 16; -1 empty */
    int index_cap;
} jmap;

struct jv {
    int kind;
    union {
        int b;
        double num;   /* V_INT holds an integral (or non-finite) double */
        jstr s;
        struct { jv **items; int n; } arr;
        jmap map;
        struct { int id; jv *self; const jnode *node; jscope *env; } fn;
    } u;
};

/* ---- the evaluator's state ---------------------------------------------- */
struct jscope {
    jscope *parent;
    jmap vars;
    int call_block;  /* made by a {% call %}: its caller is visible to the macro */
};

typedef struct jctx {
    const jinja_template *t;
    jarena a;
    jinja_limits lim;
    uint64_t steps;
    int depth;        /* nested evaluation frames */
    int calls;        /* nested macro calls */
    jv *undef, *null, *vtrue, *vfalse;
    q35_error *err;
    int failed;
} jctx;

/* Every failure goes through here: the first error wins. Returns -1. */
int jfail(jctx *c, const jnode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* An allocation failure (memory limit or malloc). */
int jnomem(jctx *c);

/* value constructors (NULL on allocation failure, after jnomem) */
jv *jv_new(jctx *c, int kind);
jv *jv_num(jctx *c, double x, int is_int);
jv *jv_str(jctx *c, jstr s);
jv *jv_strc(jctx *c, const char *s);
jv *jv_array(jctx *c, int kind, int n);  /* n items, to fill */
jv *jv_bool(jctx *c, int b);
jv *jv_fn(jctx *c, int id, jv *self);

int jmap_set(jctx *c, jmap *m, jstr key, jv *v);   /* insert or replace, keeping order */
jv *jmap_get(const jmap *m, jstr key);             /* NULL if absent */
int jmap_reserve(jctx *c, jmap *m, int n);          /* room for n keys in an empty map */
int jmap_copy(jctx *c, jmap *dst, const jmap *src);

int jv_is_array(const jv *v);      /* ARRAY or TUPLE */
int jv_is_object(const jv *v);     /* OBJECT or KWARGS (ObjectValue and its kinds) */
int jv_is_container(const jv *v);  /* OBJECT, KWARGS or NAMESPACE (attributes) */
int jv_is_number(const jv *v);     /* INT or FLOAT */
int jv_truthy(const jv *v);
const char *jv_type_name(const jv *v);

/* JavaScript's Number.prototype.toString into buf (32 bytes). */
void js_num(double x, char *buf);
/* What the renderer prints for v (RuntimeValue.toString). */
int jv_render(jctx *c, const jv *v, jbuf *out, const jnode *at);
/* String(v.value) in JavaScript: what ~ and + join. */
int jv_raw(jctx *c, const jv *v, jbuf *out, const jnode *at);
/* JSON as the reference's toJSON. indent < 0: none; undef_null: undefined
 * as null (tojson) or as "undefined" (printing). */
typedef struct jjson_opts {
    int indent;
    int ensure_ascii;
    int sort_keys;
    jstr item_sep, key_sep;
    int have_seps;
    int undef_null;
} jjson_opts;
int jv_json(jctx *c, const jv *v, const jjson_opts *o, int depth, jbuf *out, const jnode *at);
/* JSON.stringify of one string. */
void js_json_string(jbuf *out, jstr s);
/* A cJSON value as JavaScript's JSON.parse and the reference's conversion
 * give it (integral numbers are integers; object keys that are array
 * indices first, in ascending order). */
jv *jv_from_json(jctx *c, const cJSON *j);
/* JavaScript's == on the values' .value, and === (for `in`). */
int jv_loose_eq(jctx *c, const jv *a, const jv *b, const jnode *at, int *res);
int jv_strict_eq(const jv *a, const jv *b);
/* compareRuntimeValues: -1, 0, 1 in *res. */
int jv_compare(jctx *c, const jv *a, const jv *b, int case_sensitive, const jnode *at, int *res);
/* JavaScript string order (UTF-16 units). */
int js_strcmp(jstr a, jstr b);
jstr js_lower(jctx *c, jstr s);
jstr js_upper(jctx *c, jstr s);

/* ---- evaluation (jinja_eval.c) and built-ins (jinja_builtin.c) ----------- */
jv *jeval(jctx *c, const jnode *n, jscope *env);
jv *jcall(jctx *c, jv *fn, jv **args, int n_args, jscope *call_site, const jnode *at);
/* Positional arguments then one KWARGS value (if any keywords were given). */
int jeval_call_args(jctx *c, const jnode *const *args, int n, jscope *env, jv ***out, int *n_out);
/* p[0..np) followed by a KWARGS value holding kw: a new array of np + 1. */
jv **jargs_with_kwargs(jctx *c, jv **p, int np, const jmap *kw);
/* Positional arguments and the keyword arguments apart. */
int jeval_args(jctx *c, const jnode *const *args, int n, jscope *env, jv ***pos, int *n_pos,
               jmap *kw);

jv *jbuiltin_filter(jctx *c, jv *operand, const jnode *filter, jscope *env);
int jbuiltin_test(jctx *c, jstr name, const jv *operand, const jv *arg, const jnode *at,
                  int *res);
int jbuiltin_has_test(jstr name);
/* Member lookup on strings, arrays and objects: NULL when none. */
jv *jbuiltin_member(jctx *c, jv *obj, jstr name);
jv *jbuiltin_call(jctx *c, jv *fn, jv **args, int n, const jnode *at);

#endif
