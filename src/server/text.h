/* text.h — generated text as the server hands it out: whole UTF-8
 * characters only, invalid bytes as U+FFFD, and stop strings matched
 * across token boundaries (a piece that may begin a stop string is held
 * back until the next pieces decide). */
#ifndef Q35_SERVER_TEXT_H
#define Q35_SERVER_TEXT_H

#include <stddef.h>

/* The length of the longest prefix of s[0..n) that does not end inside a
 * UTF-8 sequence still waiting for its continuation bytes (those, at most
 * 3, are held back; bytes that can never form a character are not). */
size_t srv_utf8_whole(const char *s, size_t n);

/* s[0..n) as valid UTF-8, NUL-terminated and malloc'ed: each byte that
 * starts no valid character (a stray continuation, an overlong form, a
 * surrogate, a truncated sequence) becomes U+FFFD. NULL when out of memory. */
char *srv_utf8_clean(const char *s, size_t n, size_t *out_len);

/* The first position >= from where one of the n_stop strings starts in
 * text[0..n) (the earliest; any string at that position), or (size_t)-1. */
size_t srv_stop_find(const char *text, size_t n, size_t from, char *const *stop, int n_stop);

/* The length of the longest suffix of text[0..n) that is a proper prefix
 * of one of the stop strings (0 when none): text that must be held back. */
size_t srv_stop_partial(const char *text, size_t n, char *const *stop, int n_stop);

#endif
