/* tok_corpus.h — the strings q35's tokenizers are checked on against the
 * oracles, generated deterministically (a fixed-seed splitmix64): the dev
 * text, code, CJK, Arabic and other scripts, emoji, runs of whitespace and
 * newlines, CRLF, digits, contractions, invalid UTF-8, the empty string,
 * Unicode that NFC changes, and text holding special-token spellings (a
 * common list, and a tokenizer's own through corpus_specials). Used by
 * tests/test_tokenizer_oracle.c and bench/tok_bench.c. */
#ifndef Q35_TESTS_TOK_CORPUS_H
#define Q35_TESTS_TOK_CORPUS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct corpus_str {
    char *s;
    size_t n;
    const char *kind;
} corpus_str;

typedef struct corpus {
    corpus_str *v;
    int n, cap;
    uint64_t rng;
} corpus;

static uint64_t corpus_rand(corpus *c) {
    uint64_t z = (c->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int corpus_below(corpus *c, int n) { return (int)(corpus_rand(c) % (uint64_t)n); }

static void corpus_add(corpus *c, const char *kind, const char *s, size_t n) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->v = realloc(c->v, (size_t)c->cap * sizeof *c->v);
        if (!c->v) abort();
    }
    char *d = malloc(n + 1);
    if (!d) abort();
    memcpy(d, s, n);
    d[n] = '\0';
    c->v[c->n++] = (corpus_str){d, n, kind};
}

/* A growing string for building one entry. */
typedef struct cbuf {
    char p[4096];
    size_t n;
} cbuf;

static void cb_put(cbuf *b, const char *s, size_t n) {
    if (b->n + n < sizeof b->p) {
        memcpy(b->p + b->n, s, n);
        b->n += n;
    }
}
static void cb_str(cbuf *b, const char *s) { cb_put(b, s, strlen(s)); }
static void cb_cp(cbuf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (char)cp, n = 1;
    else if (cp < 0x800) u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3f)),
        u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    else
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3f)),
        u[2] = (char)(0x80 | (cp >> 6 & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    cb_put(b, u, n);
}
static const char *pick(corpus *c, const char *const *list, int n) { return list[corpus_below(c, n)]; }
#define PICK(c, arr) pick(c, arr, (int)(sizeof arr / sizeof arr[0]))

/* n, or less so that s[0..n) does not end inside a UTF-8 character. */
static size_t utf8_cut(const char *s, size_t n, size_t max) {
    if (n <= max) return n;
    n = max;
    while (n > 0 && ((uint8_t)s[n] & 0xc0) == 0x80) n--;
    return n;
}

/* ---- the kinds ----------------------------------------------------------- */

static void gen_dev(corpus *c, const char *text, size_t len, int want) {
    /* lines, and stretches of several lines (with the newlines) */
    int added = 0;
    size_t at = 0;
    while (added < want && at < len) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (end > at) {
            if (added % 5 == 4) { /* a stretch of up to 6 lines */
                size_t e = end;
                for (int k = 0; k < 5 && e < len; k++) {
                    const char *n2 = memchr(text + e + 1, '\n', len - e - 1);
                    e = n2 ? (size_t)(n2 - text) : len;
                }
                corpus_add(c, "dev", text + at, utf8_cut(text + at, e - at, 3000));
            } else {
                corpus_add(c, "dev", text + at, end - at);
            }
            added++;
        }
        at = end + 1;
    }
}

static void gen_code(corpus *c, int want) {
    static const char *const names[] = {"x", "value", "i", "buf_len", "HTTPServer", "parse_json",
                                        "__init__", "userId", "MAX_SIZE", "tmp2", "self", "k"};
    static const char *const ops[] = {" = ", " == ", " += ", "->", "::", " && ", " || ",
                                      " != ", " <= ", " >> ", "++", " ? "};
    static const char *const kw[] = {"if", "for", "while", "return", "def", "int", "const",
                                     "static", "import", "fn", "let", "class", "#include"};
    static const char *const ind[] = {"", "    ", "\t", "        ", "  ", "\t\t"};
    for (int k = 0; k < want; k++) {
        cbuf b = {0};
        int lines = 1 + corpus_below(c, 6);
        for (int l = 0; l < lines; l++) {
            cb_str(&b, PICK(c, ind));
            cb_str(&b, PICK(c, kw));
            cb_str(&b, corpus_below(c, 2) ? " (" : " ");
            cb_str(&b, PICK(c, names));
            cb_str(&b, PICK(c, ops));
            if (corpus_below(c, 2)) {
                char num[32];
                snprintf(num, sizeof num, "%d", corpus_below(c, 100000) - 500);
                cb_str(&b, num);
            } else {
                cb_str(&b, "\"str\\n\" ");
            }
            cb_str(&b, corpus_below(c, 2) ? ") {" : ";");
            if (corpus_below(c, 4) == 0) cb_str(&b, "  // note: TODO(fix) <= 3");
            if (corpus_below(c, 5) == 0) cb_str(&b, " /* a*b */ }");
            cb_str(&b, l + 1 < lines ? (corpus_below(c, 6) ? "\n" : "\n\n") : "");
        }
        if (corpus_below(c, 4) == 0) cb_str(&b, "\n{\"key\": [1, 2.5e-3, null, true], \"k2\": {}}");
        corpus_add(c, "code", b.p, b.n);
    }
}

/* Random characters from the ranges, with spaces and punctuation between. */
static void gen_script(corpus *c, const char *kind, const uint32_t (*ranges)[2], int n_ranges,
                       const char *const *phrases, int n_phrases, int want) {
    for (int k = 0; k < want; k++) {
        cbuf b = {0};
        if (k % 4 == 0) {
            cb_str(&b, phrases[corpus_below(c, n_phrases)]);
        } else {
            int words = 1 + corpus_below(c, 8);
            for (int w = 0; w < words; w++) {
                int len = 1 + corpus_below(c, 7);
                const uint32_t *r = ranges[corpus_below(c, n_ranges)];
                for (int i = 0; i < len; i++) cb_cp(&b, r[0] + (uint32_t)corpus_below(c, (int)(r[1] - r[0] + 1)));
                static const char *const sep[] = {" ", "", "，", "。", ", ", " - ", "! ", "? ", "\n", "、"};
                cb_str(&b, PICK(c, sep));
                if (corpus_below(c, 6) == 0) cb_str(&b, "abc 42 ");
            }
        }
        corpus_add(c, kind, b.p, b.n);
    }
}

static void gen_emoji(corpus *c, int want) {
    static const char *const em[] = {
        "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x81", "\xf0\x9f\xa6\x99", "\xf0\x9f\x9a\x80", "\xe2\x9c\x85",
        "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",                                       /* thumbs, skin tone */
        "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb",                           /* ZWJ */
        "\xf0\x9f\x98\xb6\xe2\x80\x8d\xf0\x9f\x8c\xab\xef\xb8\x8f",               /* face in clouds */
        "\xf0\x9f\x87\xaf\xf0\x9f\x87\xb5", "\xf0\x9f\x87\xba\xf0\x9f\x87\xa6",   /* flags */
        "1\xef\xb8\x8f\xe2\x83\xa3", "\xe2\x9d\xa4\xef\xb8\x8f", "\xe2\x98\x83",  /* keycap, heart */
        "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6",
        "\xf0\x9f\xa7\x91\xf0\x9f\x8f\xbf\xe2\x80\x8d\xf0\x9f\x94\xac", "\xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d\xf0\x9f\x8c\x88"};
    static const char *const words[] = {"party", " time", "ok", " Launch!", "love it", " (normal)", "", ":)"};
    for (int k = 0; k < want; k++) {
        cbuf b = {0};
        int n = 1 + corpus_below(c, 6);
        for (int i = 0; i < n; i++) {
            if (corpus_below(c, 2)) cb_str(&b, PICK(c, words));
            cb_str(&b, PICK(c, em));
            if (corpus_below(c, 3) == 0) cb_str(&b, " ");
        }
        corpus_add(c, "emoji", b.p, b.n);
    }
}

static void gen_space(corpus *c, int want) {
    static const char *const ws[] = {" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", "\n\n\n",
                                     "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\xa8", "\x0b", "\x0c",
                                     "\xe2\x80\x83", "\xc2\x85", "      ", "\t\t\n  ", " \n "};
    static const char *const w[] = {"Hello", "a", "x", "(", "end", "=", "9"};
    for (int k = 0; k < want; k++) {
        cbuf b = {0};
        int n = 1 + corpus_below(c, 7);
        for (int i = 0; i < n; i++) {
            int reps = 1 + corpus_below(c, 3);
            for (int r = 0; r < reps; r++) cb_str(&b, PICK(c, ws));
            if (corpus_below(c, 3)) cb_str(&b, PICK(c, w));
        }
        corpus_add(c, "whitespace", b.p, b.n);
    }
    for (int n = 1; n <= 40; n += 3) { /* long runs */
        cbuf b = {0};
        for (int i = 0; i < n; i++) cb_str(&b, " ");
        corpus_add(c, "whitespace", b.p, b.n);
        b.n = 0;
        for (int i = 0; i < n; i++) cb_str(&b, "\n");
        corpus_add(c, "whitespace", b.p, b.n);
    }
}

static void gen_crlf(corpus *c, const char *text, size_t len, int want) {
    size_t at = (size_t)corpus_below(c, (int)(len / 2));
    for (int k = 0; k < want; k++) {
        cbuf b = {0};
        int lines = 2 + corpus_below(c, 4);
        for (int l = 0; l < lines && at < len; l++) {
            const char *nl = memchr(text + at, '\n', len - at);
            size_t end = nl ? (size_t)(nl - text) : len;
            cb_put(&b, text + at, utf8_cut(text + at, end - at, 300));
            cb_str(&b, corpus_below(c, 4) ? "\r\n" : "\r\n\r\n");
            at = end + 1;
        }
        if (at >= len) at = 0;
        corpus_add(c, "crlf", b.p, b.n);
    }
}

static void gen_digits(corpus *c, int want) {
    static const char *const fixed[] = {"3", "33", "333", "3333", "33333", "333333", "3333333",
                                        "1,234,567.89", "3.14159", "2024-01-31", "+1 (555) 010-9999",
                                        "0x1F", "1e-10", "١٢٣", "१२३", "①②", "½ ¼", "10%", "$1,000"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        corpus_add(c, "digits", fixed[i], strlen(fixed[i]));
    for (int k = 0; k < want; k++) {
        cbuf b = {0};
        int n = 1 + corpus_below(c, 4);
        for (int i = 0; i < n; i++) {
            int digits = 1 + corpus_below(c, 14);
            for (int d = 0; d < digits; d++) {
                char ch = (char)('0' + corpus_below(c, 10));
                cb_put(&b, &ch, 1);
            }
            static const char *const sep[] = {" ", ",", ".", " apples ", "-", "x", ""};
            if (i + 1 < n) cb_str(&b, PICK(c, sep));
        }
        corpus_add(c, "digits", b.p, b.n);
    }
}

static void gen_contractions(corpus *c, int want) {
    static const char *const w[] = {"I'm", "you're", "DON'T", "it's", "we'll", "they'd", "I've",
                                    "She'S", "O'Neil", "'s", "''", "'", "rock 'n' roll", "y'all",
                                    "isn\xe2\x80\x99t", "can't", "WE'LL", "he'D", "'Tis", "'re'",
                                    "l'été", "dogs'", "it''s", "'ll've", "' era"};
    static const char *const f[] = {" ", " ", ", ", "! ", "? ", "", "\n"};
    for (int k = 0; k < want; k++) {
        cbuf b = {0};
        int n = 1 + corpus_below(c, 6);
        for (int i = 0; i < n; i++) {
            cb_str(&b, PICK(c, w));
            cb_str(&b, PICK(c, f));
        }
        corpus_add(c, "contractions", b.p, b.n);
    }
}

static void gen_invalid(corpus *c, int want) {
    static const char *const bad[] = {"\xff", "\xfe", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                      "\xe2\x82", "\xf0\x9f\x98", "\x80", "\xbf\xbf", "\xc3",
                                      "\xe0\x80\xaf", "\xf8\x88\x80\x80\x80", "\xc2\x41", "\xef\xbf"};
    static const char *const ok[] = {"abc", " ", "h\xc3\xa9llo", "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "1",
                                     "\n", "<s>"};
    for (int k = 0; k < want; k++) {
        cbuf b = {0};
        if (k % 5 == 4) { /* random bytes */
            int n = 1 + corpus_below(c, 24);
            for (int i = 0; i < n; i++) {
                char ch = (char)(1 + corpus_below(c, 255));
                cb_put(&b, &ch, 1);
            }
        } else {
            int n = 1 + corpus_below(c, 5);
            for (int i = 0; i < n; i++) {
                cb_str(&b, PICK(c, ok));
                cb_str(&b, PICK(c, bad));
            }
        }
        corpus_add(c, "invalid-utf8", b.p, b.n);
    }
}

static void gen_nfc(corpus *c, int want) {
    static const char *const s[] = {
        "e\xcc\x81", "E\xcc\x81", "a\xcc\x8a", "\xe1\x84\x80\xe1\x85\xa1", /* jamo */
        "\xea\xb0\x80", "n\xcc\x83o", "\xef\xac\x81", "\xe2\x84\xab", "\xe2\x84\xa6", /* fi, Å, Ω */
        "o\xcc\x88\xcc\x81", "\xe1\xba\xa1\xcc\x82", "Vi\xe1\xbb\x87t Nam", "A\xcc\x8angstr\xc3\xb6m",
        "\xe3\x81\x8b\xe3\x82\x99", "\xef\xbc\xa1", "\xe2\x91\xa0", "\xc5\xbf", "\xe1\xbe\x80", "caf\xc3\xa9",
        "cafe\xcc\x81", "\xd8\xa7\xd9\x8b", "\xe0\xa4\x95\xe0\xa4\xbc"};
    for (int k = 0; k < want; k++) {
        cbuf b = {0};
        int n = 1 + corpus_below(c, 5);
        for (int i = 0; i < n; i++) {
            cb_str(&b, PICK(c, s));
            if (corpus_below(c, 2)) cb_str(&b, " ");
        }
        corpus_add(c, "nfc", b.p, b.n);
    }
}

static const char *const COMMON_SPECIALS[] = {
    "<s>", "</s>", "<unk>", "<pad>", "<mask>", "<bos>", "<eos>", "<|endoftext|>", "<|im_start|>",
    "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
    "<|end_header_id|>", "<start_of_turn>", "<end_of_turn>", "[INST]", "[/INST]", "<|fim_prefix|>",
    "<tool_call>", "</tool_call>", "<think>", "</think>",
    "<\xef\xbd\x9c\x62\x65gin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[AVAILABLE_TOOLS]"};

/* Text around special-token spellings: whole, adjacent, cut short. */
static void gen_specials(corpus *c, const char *const *sp, int n_sp, int want) {
    static const char *const text[] = {"user\n", "Hello", " hi ", "\n", "", "system", " ",
                                       "What is 2+2?", "assistant\n", "  "};
    for (int k = 0; k < want; k++) {
        cbuf b = {0};
        int n = 1 + corpus_below(c, 5);
        for (int i = 0; i < n; i++) {
            const char *s = sp[corpus_below(c, n_sp)];
            size_t len = strlen(s);
            if (corpus_below(c, 8) == 0 && len > 2) /* cut short */
                len = utf8_cut(s, len, len - 1 - (size_t)corpus_below(c, (int)len - 1));
            cb_str(&b, PICK(c, text));
            cb_put(&b, s, len);
        }
        if (corpus_below(c, 2)) cb_str(&b, PICK(c, text));
        corpus_add(c, "specials", b.p, b.n);
    }
}

/* The corpus: about 2300 strings (dev_text: the dev set, may be NULL),
 * from the given seed. */
static void corpus_build_seeded(corpus *c, const char *dev_text, size_t dev_len, uint64_t seed) {
    static const uint32_t cjk[][2] = {{0x4e00, 0x9fa5}, {0x3041, 0x3096}, {0x30a1, 0x30fa},
                                      {0xac00, 0xd7a3}, {0x3400, 0x4dbf}};
    static const char *const cjk_p[] = {"\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8\x61pple\xe5\xb7\xa5\xe4\xbd\x9c\x31\x33\x31\x34\x31\x35\x31\xe5\xa4\xa9\xef\xbd\x9e",
                                        "\xe4\xbb\x8a\xe5\xa4\xa9\xe5\xa4\xa9\xe6\xb0\x94\xe5\xbe\x88\xe5\xa5\xbd\xe3\x80\x82",
                                        "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf\xe3\x80\x81\xe4\xb8\x96\xe7\x95\x8c\xef\xbc\x81",
                                        "\xec\x95\x88\xeb\x85\x95\xed\x95\x98\xec\x84\xb8\xec\x9a\x94 \xec\x84\xb8\xea\xb3\x84"};
    static const uint32_t other[][2] = {{0x0621, 0x064a}, {0x05d0, 0x05ea}, {0x0905, 0x0939},
                                        {0x0e01, 0x0e30}, {0x0410, 0x044f}, {0x03b1, 0x03c9},
                                        {0x1780, 0x17b3}, {0x0531, 0x0556}};
    static const char *const other_p[] = {"\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd8\xa8\xd8\xa7\xd9\x84\xd8\xb9\xd8\xa7\xd9\x84\xd9\x85",
                                          "\xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe \xd0\xbd\xd0\xb0 \xd0\x91\xd1\x8a\xd0\xbb\xd0\xb3\xd0\xb0\xd1\x80\xd1\x81\xd0\xba\xd0\xb8",
                                          "\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1",
                                          "\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87"};
    c->rng = seed;
    corpus_add(c, "empty", "", 0);
    for (int ch = 32; ch < 127; ch++) { /* every printable ASCII character alone */
        char s = (char)ch;
        corpus_add(c, "ascii", &s, 1);
    }
    if (dev_text) gen_dev(c, dev_text, dev_len, 700);
    gen_code(c, 220);
    gen_script(c, "cjk", cjk, 5, cjk_p, 4, 160);
    gen_script(c, "arabic+scripts", other, 8, other_p, 4, 140);
    gen_emoji(c, 120);
    gen_space(c, 160);
    if (dev_text) gen_crlf(c, dev_text, dev_len, 80);
    gen_digits(c, 120);
    gen_contractions(c, 140);
    gen_invalid(c, 130);
    gen_nfc(c, 90);
    gen_specials(c, COMMON_SPECIALS, (int)(sizeof COMMON_SPECIALS / sizeof COMMON_SPECIALS[0]), 160);
}

/* The test corpus: a fixed seed, the same strings every run. */
static inline void corpus_build(corpus *c, const char *dev_text, size_t dev_len) {
    corpus_build_seeded(c, dev_text, dev_len, 0x5153335f746f6bull);
}

static void corpus_free(corpus *c) {
    for (int i = 0; i < c->n; i++) free(c->v[i].s);
    free(c->v);
    memset(c, 0, sizeof *c);
}

#endif
