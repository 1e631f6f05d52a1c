/* hf_internal.h — what the Hugging Face reader's files share: the JSON
 * helpers (defined in hf_json.c) that safetensors.c, hf_tokenizer.c and
 * hf.c all use, and the tokenizer.json entry with special-token names
 * (hf_tokenizer.c) that the folder loader (hf.c) calls. */
#ifndef Q35_IO_HF_INTERNAL_H
#define Q35_IO_HF_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "q35.h"

/* ---- JSON (hf_json.c) ---------------------------------------------------- */

/* Parses n bytes (not NUL-terminated) holding one JSON value and perhaps
 * whitespace after it. NULL with err filled on failure; else cJSON_Delete
 * the result. */
cJSON *q35_hf_json_parse(const char *text, size_t n, const char *file, q35_error *err);

/* 0 and *out = v's value when v is a number with an integral value in
 * [lo, hi]; else -1. */
int q35_hf_json_int(const cJSON *v, double lo, double hi, int64_t *out);

/* obj's member key (case-sensitive), or NULL. */
const cJSON *q35_hf_member(const cJSON *obj, const char *key);

/* A member that is absent or null. */
int q35_hf_absent(const cJSON *v);

/* v is a string equal to s. */
int q35_hf_is_string(const cJSON *v, const char *s);

/* A boolean member; def when absent or null. */
int q35_hf_member_bool(const cJSON *obj, const char *key, int def, int *out, const char *file,
                       q35_error *err);

/* ---- tokenizer.json (hf_tokenizer.c) ------------------------------------- */

struct q35_tokenizer;

/* bos / eos names from tokenizer_config.json, where it exists. */
typedef struct q35_hf_special_names {
    const char *bos, *eos; /* NULL: "<s>" / "</s>" if present */
    const char *source;    /* the file that named them */
} q35_hf_special_names;

/* Builds a tokenizer from the len bytes of tokenizer.json text at json
 * (file names it in errors), with the special tokens sn names. */
int q35_hf_tokenizer_from_json(const char *json, size_t len, const char *file,
                               const q35_hf_special_names *sn, struct q35_tokenizer **out,
                               q35_error *err);

#endif
