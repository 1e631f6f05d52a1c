#include "cli/cli.h"
#include "cli/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_error(const char *cmd, const char *fmt, ...) {
    fprintf(stderr, "q35 %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        cli_error(cmd, "%s '%s' is not a whole number", flag, s);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_error(cmd, "%s %ld is out of range [%ld, %ld]", flag, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *cmd, const char *flag, const char *s, double lo, double hi,
              double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v)) {
        cli_error(cmd, "%s '%s' is not a number", flag, s);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_error(cmd, "%s %g is out of range [%g, %g]", flag, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0' || s[0] == '-') {
        cli_error(cmd, "%s '%s' is not a non-negative whole number", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_kv_type(const char *cmd, const char *flag, const char *s) {
    if (!strcmp(s, "f16") || !strcmp(s, "f32") || !strcmp(s, "q8") || !strcmp(s, "auto")) return 0;
    cli_error(cmd, "%s %s: give f16, f32, q8 or auto", flag, s);
    return -1;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_error(cmd, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_default_model(char *out, size_t cap) {
    const char *env = getenv("Q35_MODELS");
    const char *dirs[] = {env && *env ? env : NULL, "./models", "../shared/models"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (!dirs[i]) continue;
        snprintf(out, cap, "%s/stories260K/stories260K.bin", dirs[i]);
        if (access(out, R_OK) == 0) return 0;
    }
    return -1;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Splits text at every "\n\n" (a blank line), keeping each document's
 * bytes as they are: inner newlines stay, and the last document keeps the
 * file's final newline (the same split as Python's text.split("\n\n"),
 * which the reference figures used). Pieces of only whitespace are
 * skipped. */
int cli_split_docs_raw(const char *text, size_t len, cli_doc **out) {
    int n = 0, cap = 64;
    cli_doc *d = malloc((size_t)cap * sizeof *d);
    if (!d) return -1;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        int sep = i + 1 < len && text[i] == '\n' && text[i + 1] == '\n';
        if (i < len && !sep) continue;
        int blank = 1;
        for (size_t j = start; j < i && blank; j++)
            blank = text[j] == ' ' || text[j] == '\n' || text[j] == '\t' || text[j] == '\r';
        if (!blank) {
            if (n == cap) {
                cli_doc *g = realloc(d, (size_t)(cap *= 2) * sizeof *g);
                if (!g) {
                    free(d);
                    return -1;
                }
                d = g;
            }
            d[n++] = (cli_doc){text + start, i - start};
        }
        start = i + 2;
        i++; /* past the separator's second newline */
    }
    *out = d;
    return n;
}

int cli_split_docs(const char *cmd, const char *path, const char *text, size_t len, cli_doc **docs) {
    int n = cli_split_docs_raw(text, len, docs);
    if (n < 0) return cli_error(cmd, "out of memory"), -1;
    if (n == 0) {
        free(*docs);
        *docs = NULL;
        return cli_error(cmd, "%s: no text (empty, or only blank lines)", path), -1;
    }
    return n;
}

int cli_read_text(const char *cmd, const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return cli_error(cmd, "%s: cannot open", path), -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *g = realloc(buf, cap *= 2);
            if (!g) free(buf);
            buf = g;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return cli_error(cmd, "%s: %s", path, bad ? "read error" : "out of memory"), -1;
    }
    *text = buf;
    *len = n;
    return 0;
}

int cli_check_output(const char *cmd, const char *path, int seeks) {
    const q35_outfile_opts o = {.seeks = seeks};
    q35_error err = {0};
    if (q35_outfile_check(path, &o, &err)) return cli_error(cmd, "%s", err.msg), -1;
    /* a reader that goes away is reported (EPIPE), not a silent death */
    if (!seeks) signal(SIGPIPE, SIG_IGN);
    return 0;
}

FILE *cli_report_stream(const char *out) {
    struct stat a, b;
    return out && stat(out, &a) == 0 && fstat(STDOUT_FILENO, &b) == 0 && a.st_dev == b.st_dev &&
                   a.st_ino == b.st_ino
               ? stderr
               : stdout;
}

int cli_positional(const char *cmd, const char *a, const char **first, const char **second) {
    if (!*first) *first = a;
    else if (!*second) *second = a;
    else return cli_error(cmd, "unexpected argument '%s'", a), -1;
    return 0;
}

int cli_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int cli_model_params(const char *cmd, q35_model_params *p) {
    *p = q35_model_default_params();
    const char *k = getenv("Q35_KERNELS"), *r16 = getenv("Q35_R16"), *mem = getenv("Q35_MEM_AVAILABLE");
    if (k && *k) p->kernels = k;
    if (r16 && strcmp(r16, "0") == 0) p->r16 = 0;
    if (mem && *mem) {
        uint64_t b;
        if (strcasecmp(mem, "off") == 0) p->mem_available = -1;
        else if (q35_parse_size(mem, &b) == 0 && b > 0 && b <= (uint64_t)INT64_MAX) p->mem_available = (int64_t)b;
        else return cli_error(cmd, "Q35_MEM_AVAILABLE=%s: give a size such as 16G, or off", mem), -1;
    }
    return 0;
}

int cli_session_params(const char *cmd, q35_session_params *p) {
    *p = q35_session_default_params();
    const char *k = getenv("Q35_KERNELS"), *r16 = getenv("Q35_R16");
    if (k && *k) p->kernels = k;
    if (r16 && strcmp(r16, "0") == 0) p->r16 = 0;
    const char *g = getenv("Q35_CUDA_GRAPH"), *pdl = getenv("Q35_CUDA_PDL");
    const char *gemv = getenv("Q35_CUDA_GEMV"), *lim = getenv("Q35_CUDA_MAX_BYTES");
    if (g && strcmp(g, "0") == 0) p->cuda_graph = 0;
    if (pdl && strcmp(pdl, "1") == 0) p->cuda_pdl = 1;
    long v;
    if (gemv && *gemv) {
        if (cli_int(cmd, "Q35_CUDA_GEMV", gemv, 0, 2, &v)) return -1;
        p->cuda_gemv = (int)v;
    }
    if (lim && *lim && cli_u64(cmd, "Q35_CUDA_MAX_BYTES", lim, &p->cuda_max_bytes)) return -1;
    return 0;
}

int cli_load_model(const char *cmd, const char *path, const char *tokenizer, unsigned flags,
                   const char *convert_type, q35_model **m) {
    q35_model_params p;
    if (cli_model_params(cmd, &p)) return -1;
    p.tokenizer_path = tokenizer;
    p.flags = flags;
    p.convert_type = convert_type;
    q35_error err = {0};
    const double t0 = cli_now();
    if (q35_model_load_params(m, path, &p, &err) == 0) {
        const q35_conversion c = q35_model_conversion(*m);
        if (c.n_matrices)
            fprintf(stderr, "q35 %s: converted %d matrices from %s to %s at load (%.1f s)\n", cmd, c.n_matrices,
                    c.from, c.to, cli_now() - t0);
        return 0;
    }
    if (err.code == Q35_ERR_NOMEM && strstr(err.msg, "available"))
        return cli_error(cmd, "%s; Q35_MEM_AVAILABLE=off skips this check", err.msg), -1;
    return cli_error(cmd, "%s", err.msg), -1;
}

int cli_eval(cli_engine *e, const int *tokens, int n, int all, float *out, q35_error *err) {
    uint8_t *want = calloc(n > 0 ? (size_t)n : 1, 1);
    if (!want) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return err->code = Q35_ERR_NOMEM;
    }
    for (int t = 0; t < n; t++) want[t] = all || t == n - 1;
    const q35_batch b = {n, tokens, NULL, want};
    const int rc = cli_engine_decode(e, &b, out, err);
    free(want);
    return rc;
}

char *cli_json_string(const char *s, size_t len, size_t *out_len) {
    char *out = malloc(6 * len + 3), *w = out;
    if (!out) return NULL;
    *w++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                      : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        if (e) w += sprintf(w, "%s", e);
        else if (c < 0x20) w += sprintf(w, "\\u%04x", c);
        else *w++ = (char)c;
    }
    *w++ = '"';
    *w = '\0';
    *out_len = (size_t)(w - out);
    return out;
}
