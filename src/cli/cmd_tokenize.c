/* cmd_tokenize.c — `q35 tokenize`: text to token ids and back with any
 * tokenizer q35 reads, as llama.cpp's llama-tokenize; with --jsonl a filter
 * for tests and scripts (one JSON string per line in, one JSON array of ids
 * out; --decode the reverse).
 *
 * JSON strings are read with every escape (\uXXXX pairs included; a lone
 * surrogate reads as U+FFFD, as TextEncoder makes it) and may hold NULs;
 * bytes that are not valid UTF-8 inside a string pass through as they are.
 * Decoded text is written as a JSON string whose bytes are the decoded
 * bytes, escaped only where JSON requires (", \, control characters): bytes
 * that form no UTF-8 character are written as they are, so the output is
 * exact (a strict JSON reader may refuse such a line). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 tokenize --tokenizer PATH [--special] [--jsonl] [--decode] [-p TEXT | -f FILE]\n"
            "  --tokenizer PATH  tokenizer.json, a Hugging Face folder, a GGUF file or a llama2.c\n"
            "                    tokenizer .bin\n"
            "  --special         add the tokenizer's special tokens (BOS ...) and read special-token\n"
            "                    spellings in the text as those tokens; with --decode, print special\n"
            "                    tokens' text\n"
            "  --jsonl           stdin holds one JSON string per line (with --decode one JSON array of\n"
            "                    ids); prints one JSON array of ids (a JSON string) per line\n"
            "  --decode          ids to text\n"
            "  -p, --prompt TEXT the text (with --decode a JSON array of ids); default: all of stdin\n"
            "  -f, --file FILE   the text from a file\n"
            "Prints the ids as one JSON array (with --decode the text as one JSON string).\n");
}

/* ---- JSON strings ---------------------------------------------------------- */

typedef struct bytes {
    char *p;
    size_t n, cap;
} bytes;

static int put(bytes *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static int put_cp(bytes *b, unsigned cp) {
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
    return put(b, u, n);
}

static int hex4(const char *s, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v * 16 + (unsigned)d;
    }
    return 0;
}

/* Parses the JSON string that line[0..n) holds (whitespace around it
 * allowed) into out; -1 if it is not one. */
static int read_json_string(const char *line, size_t n, bytes *out) {
    size_t i = 0;
    out->n = 0;
    if (put(out, "", 0)) return -1;
    while (i < n && strchr(" \t\r", line[i])) i++;
    if (i >= n || line[i++] != '"') return -1;
    for (;;) {
        if (i >= n) return -1;
        char c = line[i++];
        if (c == '"') break;
        if ((unsigned char)c < 0x20) return -1;
        if (c != '\\') {
            if (put(out, &c, 1)) return -1;
            continue;
        }
        if (i >= n) return -1;
        char e = line[i++];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple && e) {
            static const char to[] = "\"\\/\b\f\n\r\t";
            if (put(out, &to[simple - "\"\\/bfnrt"], 1)) return -1;
            continue;
        }
        unsigned cp, lo;
        if (e != 'u' || i + 4 > n || hex4(line + i, &cp)) return -1;
        i += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= n && line[i] == '\\' && line[i + 1] == 'u' &&
            !hex4(line + i + 2, &lo) && lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
        } else if (cp >= 0xd800 && cp < 0xe000) {
            cp = 0xfffd; /* a lone surrogate */
        }
        if (put_cp(out, cp)) return -1;
    }
    while (i < n && strchr(" \t\r", line[i])) i++;
    return i == n ? 0 : -1;
}

static void write_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') fputs("\\\"", f);
        else if (c == '\\') fputs("\\\\", f);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void write_ids(FILE *f, const int *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ",%d" : "%d", ids[i]);
    fputc(']', f);
}

/* A JSON array of ids; -1 if it is not one. */
static int read_ids(const char *s, size_t n, int **ids, int *n_ids) {
    cJSON *j = cJSON_ParseWithLength(s, n);
    *ids = NULL;
    *n_ids = 0;
    if (!cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return -1;
    }
    int k = cJSON_GetArraySize(j), bad = 0;
    *ids = malloc((size_t)(k ? k : 1) * sizeof **ids);
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        double x = cJSON_IsNumber(e) ? e->valuedouble : 0.5;
        if (!(x >= INT_MIN && x <= INT_MAX) || x != floor(x)) bad = 1; /* also NaN */
        else if (*ids) (*ids)[(*n_ids)++] = (int)e->valuedouble;
    }
    cJSON_Delete(j);
    if (bad || !*ids) {
        free(*ids);
        *ids = NULL;
        return -1;
    }
    return 0;
}

/* ---- one item ---------------------------------------------------------------- */

/* Encodes or decodes one item and prints the result line; 0, or 1 after an
 * error (what names the input). */
static int one(const q35_tokenizer *t, const char *in, size_t n, int decode, int special,
               int json_in, const char *what) {
    const char *C = "tokenize";
    q35_error err = {0};
    int *ids = NULL, n_ids = 0;
    if (decode) {
        char *text = NULL;
        size_t len = 0;
        if (read_ids(in, n, &ids, &n_ids))
            return cli_error(C, "%s: not a JSON array of token ids", what);
        int rc = q35_tokenizer_decode_ids(t, ids, n_ids, special ? Q35_DECODE_SPECIAL : 0, &text,
                                          &len, &err);
        free(ids);
        if (rc) return cli_error(C, "%s: %s", what, err.msg);
        write_json_string(stdout, text, len);
        fputc('\n', stdout);
        free(text);
        return 0;
    }
    bytes b = {0};
    if (json_in && read_json_string(in, n, &b)) {
        free(b.p);
        return cli_error(C, "%s: not a JSON string", what);
    }
    unsigned flags = special ? Q35_TOKENIZE_ADD_SPECIAL | Q35_TOKENIZE_PARSE_SPECIAL : 0;
    int rc = q35_tokenizer_encode(t, json_in ? b.p : in, json_in ? b.n : n, flags, &ids, &n_ids,
                                  &err);
    free(b.p);
    if (rc) return cli_error(C, "%s: %s", what, err.msg);
    write_ids(stdout, ids, n_ids);
    fputc('\n', stdout);
    free(ids);
    return 0;
}

static int read_stdin(char **text, size_t *len) {
    bytes b = {0};
    char buf[65536];
    size_t k;
    if (put(&b, "", 0)) return -1;
    while ((k = fread(buf, 1, sizeof buf, stdin)) > 0)
        if (put(&b, buf, k)) {
            free(b.p);
            return -1;
        }
    *text = b.p;
    *len = b.n;
    return ferror(stdin) ? -1 : 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *C = "tokenize";
    const char *tok_path = NULL, *prompt = NULL, *file = NULL;
    int special = 0, jsonl = 0, decode = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(C, argc, argv, &i))) return 1
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--tokenizer")) { VAL(); tok_path = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { VAL(); prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { VAL(); file = v; }
        else if (!strcmp(a, "--special")) special = 1;
        else if (!strcmp(a, "--jsonl")) jsonl = 1;
        else if (!strcmp(a, "--decode")) decode = 1;
        else return cli_error(C, "unknown flag '%s' (see q35 tokenize --help)", a);
#undef VAL
    }
    if (!tok_path) return cli_error(C, "no tokenizer: give --tokenizer PATH");
    if (prompt && file) return cli_error(C, "-p and -f: give one of them");
    if (jsonl && (prompt || file)) return cli_error(C, "--jsonl reads stdin: drop -p / -f");
    q35_error err = {0};
    q35_tokenizer *t = NULL;
    if (q35_tokenizer_load(&t, tok_path, &err)) return cli_error(C, "%s", err.msg);
    int status = 0;
    char *text = NULL;
    size_t len = 0;
    if (prompt) {
        status = one(t, prompt, strlen(prompt), decode, special, 0, "-p");
    } else if (file) {
        status = cli_read_text(C, file, &text, &len) ? 1 : one(t, text, len, decode, special, 0, file);
    } else if (read_stdin(&text, &len)) {
        status = cli_error(C, "cannot read stdin");
    } else if (!jsonl) {
        status = one(t, text, len, decode, special, 0, "stdin");
    } else {
        size_t line_no = 0;
        for (size_t at = 0; at < len && !status; line_no++) {
            const char *nl = memchr(text + at, '\n', len - at);
            size_t end = nl ? (size_t)(nl - text) : len;
            char what[48];
            snprintf(what, sizeof what, "stdin line %zu", line_no + 1);
            status = one(t, text + at, end - at, decode, special, 1, what);
            at = end + 1;
        }
    }
    free(text);
    q35_tokenizer_free(t);
    if (fflush(stdout) != 0) return cli_error(C, "cannot write the output");
    return status;
}
