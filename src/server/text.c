/* text.c — UTF-8 boundaries and cleaning, stop strings (text.h). */
#include "server/text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The length of the valid UTF-8 character at s[0..n): 1-4, or 0 when the
 * bytes start no valid character; *need receives the length its lead byte
 * announces (0 for a byte that is no lead byte). */
static size_t utf8_char(const unsigned char *s, size_t n, size_t *need) {
    const unsigned c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80) return *need = 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
    else return *need = 0;
    *need = len;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

size_t srv_utf8_whole(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    /* the last lead byte among the final 3 bytes, if its sequence is cut short */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        const size_t i = n - back;
        if ((u[i] & 0xC0) == 0x80) continue; /* a continuation byte: look further back */
        size_t need;
        utf8_char(u + i, n - i, &need);
        if (need > back) { /* its continuation bytes so far must be valid ones */
            int ok = 1;
            for (size_t k = i + 1; k < n; k++) ok &= (u[k] & 0xC0) == 0x80;
            return ok ? i : n;
        }
        return n;
    }
    return n;
}

char *srv_utf8_clean(const char *s, size_t n, size_t *out_len) {
    const unsigned char *u = (const unsigned char *)s;
    char *out = malloc(3 * n + 1), *w = out; /* U+FFFD is 3 bytes for each bad byte */
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        size_t need, len = utf8_char(u + i, n - i, &need);
        if (len) {
            memcpy(w, u + i, len);
            w += len;
            i += len;
        } else {
            memcpy(w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
        }
    }
    *w = '\0';
    if (out_len) *out_len = (size_t)(w - out);
    return out;
}

size_t srv_stop_find(const char *text, size_t n, size_t from, char *const *stop, int n_stop) {
    for (size_t p = from; p < n; p++)
        for (int k = 0; k < n_stop; k++) {
            const size_t len = strlen(stop[k]);
            if (len <= n - p && memcmp(text + p, stop[k], len) == 0) return p;
        }
    return (size_t)-1;
}

size_t srv_stop_partial(const char *text, size_t n, char *const *stop, int n_stop) {
    size_t best = 0;
    for (int k = 0; k < n_stop; k++) {
        const size_t len = strlen(stop[k]);
        for (size_t m = len - 1 < n ? len - 1 : n; m > best; m--)
            if (memcmp(text + n - m, stop[k], m) == 0) {
                best = m;
                break;
            }
    }
    return best;
}
