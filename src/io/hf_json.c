/* hf_json.c — the JSON helpers the Hugging Face reader's files share
 * (declared in hf_internal.h): parsing with the UTF-8 check, integer and
 * typed member accessors. JSON is read with cJSON; every value's type is
 * checked before use.
 *
 * Choices:
 *  - JSON text must be valid UTF-8 without NUL bytes (cJSON checks
 *    neither; strings end at a NUL in C) and hold one value, optionally
 *    followed by whitespace.
 *  - Integers are JSON numbers with an integral value (cJSON keeps only a
 *    double, so 2.0 passes and 2.5 does not), at most 2^53 (exact). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "io/hf_internal.h"

/* ---- JSON -------------------------------------------------------------- */

/* Offset of the first byte of s[0..n) that is NUL or not valid UTF-8
 * (overlong forms, surrogates and code points past U+10FFFF are not); n
 * when there is none. */
static size_t utf8_invalid_at(const uint8_t *s, size_t n) {
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp;
        if (c == 0) return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
        else return i;
        if (len > n - i) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return i;
        i += len;
    }
    return n;
}

/* Parses n bytes (not NUL-terminated) holding one JSON value and perhaps
 * whitespace after it. NULL with err filled on failure; else cJSON_Delete
 * the result. */
cJSON *q35_hf_json_parse(const char *text, size_t n, const char *file, q35_error *err) {
    size_t bad = utf8_invalid_at((const uint8_t *)text, n);
    if (bad < n) {
        q35_fail(err, Q35_ERR_FORMAT, "%s: byte %zu of the JSON text is %s", file, bad,
                 text[bad] ? "not valid UTF-8" : "NUL");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        q35_fail(err, Q35_ERR_FORMAT, "%s: invalid JSON near byte %zu", file, at);
        return NULL;
    }
    for (size_t i = (size_t)(end - text); i < n; i++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            cJSON_Delete(root);
            q35_fail(err, Q35_ERR_FORMAT, "%s: text after the JSON value at byte %zu", file, i);
            return NULL;
        }
    }
    return root;
}

/* 0 and *out = v's value when v is a number with an integral value in
 * [lo, hi]; else -1. */
int q35_hf_json_int(const cJSON *v, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || d != floor(d)) return -1;
    *out = (int64_t)d;
    return 0;
}

const cJSON *q35_hf_member(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* A member that is absent or null. */
int q35_hf_absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

int q35_hf_is_string(const cJSON *v, const char *s) {
    return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0;
}

/* A boolean member; def when absent or null. */
int q35_hf_member_bool(const cJSON *obj, const char *key, int def, int *out, const char *file,
                       q35_error *err) {
    const cJSON *v = q35_hf_member(obj, key);
    if (q35_hf_absent(v)) {
        *out = def;
        return Q35_OK;
    }
    if (!cJSON_IsBool(v))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: \"%s\" is not true or false", file, key);
    *out = cJSON_IsTrue(v);
    return Q35_OK;
}
