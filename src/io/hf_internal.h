/* hf_internal.h — the JSON helpers (defined in hf_json.c) that
 * safetensors.c, hf.c and the tokenizer module's tokenizer.json reader
 * use. */
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

#endif
