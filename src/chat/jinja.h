/* jinja.h — a Jinja interpreter for chat templates, made to render exactly
 * as @huggingface/jinja 0.5.13 (the JavaScript implementation transformers.js
 * uses) with its settings trim_blocks and lstrip_blocks.
 *
 * A template is parsed once (jinja_parse: preprocessing, lexer, parser to
 * an AST) and rendered any number of times (jinja_render) with a context
 * given as a JSON object; values keep JavaScript's meaning where that
 * implementation shows through (numbers are doubles, strings count UTF-16
 * units, == is JavaScript's loose equality, {{ true }} prints "true").
 * Rendering is bounded: steps, nesting, output and memory each have a
 * limit, and exceeding one is an error, never a hang. Errors are one line
 * (with the template's line where one applies). No global mutable state. */
#ifndef Q35_CHAT_JINJA_H
#define Q35_CHAT_JINJA_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "q35.h"

typedef struct jinja_template jinja_template;

typedef struct jinja_limits {
    uint64_t max_steps;  /* evaluation steps (expressions, loop iterations) */
    int max_depth;       /* nested macro calls */
    size_t max_output;   /* bytes of any one rendered string */
    size_t max_memory;   /* bytes allocated while rendering */
} jinja_limits;

/* The defaults: 20M steps, 100 nested calls, 64 MiB output, 256 MiB memory. */
jinja_limits jinja_default_limits(void);

/* Parses len bytes of template source (invalid UTF-8 reads as U+FFFD, as a
 * JavaScript file read does). name is used in errors. */
int jinja_parse(jinja_template **out, const char *src, size_t len, const char *name,
                q35_error *err);
void jinja_free(jinja_template *t);

/* Renders with the members of ctx (a JSON object) as variables, in the
 * order given (a key that names a global — true, none, range, ... — is an
 * error, as in the reference). lim may be NULL (defaults). *out is
 * malloc'ed, NUL-terminated, *out_len bytes (may hold NUL bytes). */
int jinja_render(const jinja_template *t, const cJSON *ctx, const jinja_limits *lim,
                 char **out, size_t *out_len, q35_error *err);

#endif
