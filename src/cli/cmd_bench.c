#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
/* cmd_bench.c — `q35 bench`: prompt processing and generation speed, as
 * llama.cpp's llama-bench measures them, with the model's size and bits per
 * weight, peak RSS, and (--roofline) the machine's read bandwidth and the
 * decode roofline it implies.
 *
 *   ppN: a prompt of N tokens (BOS, then random ids) in one
 *        q35_session_eval_batch call on an empty context;
 *   tgN: N tokens one at a time with q35_session_eval on an empty context
 *        (BOS first, then random ids; no sampling).
 * With -d D (llama-bench's depth) each test runs after D tokens already in
 * the KV cache (evaluated untimed once, then cut back to before each run),
 * named "ppN @ dD".
 * Each test runs once to warm up (pp in full, tg for one token), then -r
 * times; t/s is the mean and sample standard deviation over the runs.
 *
 * Roofline: decoding reads every weight once per token, so a token cannot
 * take less than (bytes of weights read per token) / (read bandwidth). The
 * bandwidth (bandwidth_now: the best of 5 sums over a 1 GiB array) is
 * measured right before and right after each tg test at its thread count,
 * and the row's roofline takes the higher of the two: the machine's
 * bandwidth drifts by up to a third within minutes, so one figure taken
 * at the start of a long run says little about a test an hour later. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <math.h>

#include "cli/cli.h"
#include "cli/engine.h"

#define MAX_LIST 32
#define BW_MAX_THREADS 256

typedef struct int_list {
    long v[MAX_LIST];
    int n;
} int_list;

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 bench -m MODEL [-m MODEL ...] [flags]\n"
            "  -m, --model FILE        model to measure (repeatable)\n"
            "  -p, --n-prompt N,...    prompt lengths: ppN tests (default 512; 0 = none)\n"
            "  -n, --n-gen N,...       generation lengths: tgN tests (default 128; 0 = none)\n"
            "  -t, --threads N,...     thread counts (default: number of cores)\n"
            "  -d, --n-depth D,...     tokens already in the KV cache before each test (default 0)\n"
            "  -r, --repetitions N     runs per test after a warm-up run (default 5)\n"
            "  -o, --output md|json    a markdown table (default) or JSON\n"
            "      --roofline          measure read bandwidth before and after each tg test and add\n"
            "                          the decode roofline (bandwidth / bytes read per token)\n"
            "                          to the tg rows\n"
            "  -b, --batch-size N      prompt tokens evaluated together (default 128)\n"
            "      --kv-type T         KV cache: f16, f32, q8 or auto (default auto, see q35 run)\n"
            "  -ngl, --n-gpu-layers N  layers on the GPU (a `make cuda` build; default 0)\n"
            "      --seed S            seed of the random token ids (default 1)\n"
            CLI_CONVERT_HELP);
}

/* "64,512" (appended to l); 0 on success, else an error is printed. */
static int parse_list(const char *C, const char *flag, const char *s, long lo, long hi, int_list *l) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return cli_error(C, "%s: list too long", flag), -1;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (l->n == MAX_LIST) return cli_error(C, "%s: more than %d values", flag, MAX_LIST), -1;
        if (cli_int(C, flag, tok, lo, hi, &l->v[l->n])) return -1;
        l->n++;
    }
    if (!*s || s[strlen(s) - 1] == ',' || s[0] == ',')
        return cli_error(C, "%s '%s': give numbers separated by commas", flag, s), -1;
    return 0;
}

/* ---- read bandwidth ------------------------------------------------------ */

/* One thread's part of a read pass: eight independent sums (the loads, not
 * the adds, set the pace); touch 1 writes the words instead (first touch). */
typedef struct bw_part {
    uint64_t *a;
    size_t lo, hi;
    int touch;
    uint64_t sum;
} bw_part;

static void *bw_run(void *arg) {
    bw_part *p = arg;
    if (p->touch) {
        for (size_t i = p->lo; i < p->hi; i++) p->a[i] = i * 0x9E3779B97F4A7C15ull;
        return NULL;
    }
    const uint64_t *a = p->a;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (size_t i = p->lo; i < p->hi; i += 8) {
        s0 += a[i], s1 += a[i + 1], s2 += a[i + 2], s3 += a[i + 3];
        s4 += a[i + 4], s5 += a[i + 5], s6 += a[i + 6], s7 += a[i + 7];
    }
    p->sum = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    return NULL;
}

/* One pass of `threads` POSIX threads over a's n words (n a multiple of
 * 8; each thread's part is too, since the sums read 8 at a time); its
 * time in seconds, or -1. */
static double bw_pass(uint64_t *a, size_t n, int threads, int touch, uint64_t *sink) {
    pthread_t tid[BW_MAX_THREADS];
    bw_part part[BW_MAX_THREADS];
    const double t0 = cli_now();
    int started = 0, ok = 1;
    for (int k = 0; k < threads; k++) {
        part[k] = (bw_part){a, n / 8 * k / threads * 8, n / 8 * (k + 1) / threads * 8, touch, 0};
        if (pthread_create(&tid[k], NULL, bw_run, &part[k]) != 0) {
            ok = 0;
            break;
        }
        started++;
    }
    for (int k = 0; k < started; k++) {
        pthread_join(tid[k], NULL);
        *sink += part[k].sum;
    }
    return ok ? cli_now() - t0 : -1;
}

/* The read bandwidth of `threads` threads now, in GB/s (1e9 bytes): the
 * best of 5 passes over 1 GiB, in a child process, so that its gigabyte
 * stays out of this process's peak RSS and its threads out of the OpenMP
 * pool's way (the child uses POSIX threads: after fork only the forking
 * thread exists, and OpenMP may not be used there). 0 where it could not
 * be measured. */
static double bandwidth_now(int threads) {
    if (threads < 1 || threads > BW_MAX_THREADS) return 0;
    const size_t n = ((size_t)1 << 30) / sizeof(uint64_t);
    double gbs = 0;
    int fd[2];
    if (pipe(fd) != 0) return 0;
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return 0;
    }
    if (pid == 0) {
        /* a page no one may touch after the array: a pass that reads past
         * its end dies here and gives no figure, rather than a wrong one */
        const size_t page = 4096;
        uint64_t *a = mmap(NULL, n * sizeof *a + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        uint64_t sink = 0;
        if (a != MAP_FAILED && mprotect((char *)a + n * sizeof *a, page, PROT_NONE) == 0 &&
            bw_pass(a, n, threads, 1, &sink) >= 0)
            for (int r = 0; r < 5; r++) {
                const double dt = bw_pass(a, n, threads, 0, &sink);
                if (dt > 0 && (double)n * 8.0 / dt / 1e9 > gbs) gbs = (double)n * 8.0 / dt / 1e9;
            }
        const ssize_t w = write(fd[1], &gbs, sizeof gbs);
        _exit(w == (ssize_t)sizeof gbs && sink != 1 ? 0 : 1);
    }
    close(fd[1]);
    size_t got = 0;
    while (got < sizeof gbs) {
        const ssize_t r = read(fd[0], (char *)&gbs + got, sizeof gbs - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return got == sizeof gbs && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? gbs : 0;
}

/* ---- statistics ------------------------------------------------------------ */

static void mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = n ? s / n : 0;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

static uint64_t next_rand(uint64_t *s) { /* splitmix64 */
    uint64_t x = (*s += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* ---- one model ------------------------------------------------------------ */

typedef struct model_facts {
    const char *path, *name; /* name: the file's basename */
    char type[16];           /* the type holding most bytes of the 2-D tensors */
    uint64_t size, params, per_token;
    double bpw;
} model_facts;

static void describe(const q35_model *m, model_facts *f) {
    const char *types[16] = {0};
    uint64_t bytes[16] = {0};
    int nt = 0;
    f->size = 0;
    for (int i = 0; i < q35_model_n_tensors(m); i++) {
        q35_tensor_desc d;
        if (q35_model_tensor(m, i, &d)) continue;
        f->size += d.nbytes;
        if (d.n_dims < 2) continue;
        int k = 0;
        while (k < nt && strcmp(types[k], d.type)) k++;
        if (k == nt && nt < 16) types[nt++] = d.type;
        if (k < nt) bytes[k] += d.nbytes;
    }
    int best = 0;
    for (int k = 1; k < nt; k++)
        if (bytes[k] > bytes[best]) best = k;
    snprintf(f->type, sizeof f->type, "%s", nt ? types[best] : "?");
    f->params = q35_model_n_params(m);
    f->per_token = q35_model_weight_bytes(m);
    f->bpw = f->params ? 8.0 * (double)f->size / (double)f->params : 0;
}

static void human_size(uint64_t b, char *out, size_t cap) {
    if (b >= (1ull << 30)) snprintf(out, cap, "%.2f GiB", (double)b / 1073741824.0);
    else snprintf(out, cap, "%.2f MiB", (double)b / 1048576.0);
}

static void human_params(uint64_t n, char *out, size_t cap) {
    if (n >= 1000000000ull) snprintf(out, cap, "%.2f B", (double)n / 1e9);
    else if (n >= 1000000ull) snprintf(out, cap, "%.2f M", (double)n / 1e6);
    else snprintf(out, cap, "%.2f K", (double)n / 1e3);
}

typedef struct bench_opts {
    int_list pp, tg, threads, depth;
    long reps, ngl, batch; /* batch 0: the session's default */
    const char *kv_type;   /* NULL: the session's default */
    const char *convert;   /* --convert-type; NULL: the library's default */
    int json, roofline;
    uint64_t seed;
    double bw_lo[MAX_LIST], bw_hi[MAX_LIST]; /* per thread count: the range of the bandwidths measured */
    FILE *out; /* rows go here: stdout (md), or a buffer printed on success (json) */
} bench_opts;

/* One test: -r timed runs after a warm-up, each after `depth` tokens in
 * the cache. The context is evaluated untimed once per engine and depth
 * (*filled: the depth the cache holds, -1 for none) and cut back to it
 * before each run, as llama-bench restores its saved state: a depth of
 * 4096 on a 7B model takes minutes to fill. Returns 0 or prints an
 * error. */
static int run_test(const char *C, cli_engine *s, int vocab, int bos, int is_pp, int n, int depth,
                    const bench_opts *o, double *samples, int *filled) {
    int *tokens = malloc((size_t)(n + depth) * sizeof *tokens), *ctx = tokens + n;
    float *logits = malloc((size_t)vocab * sizeof *logits);
    if (!tokens || !logits) {
        free(tokens);
        free(logits);
        return cli_error(C, "out of memory");
    }
    uint64_t rs = o->seed;
    q35_error err = {0};
    int rc = 0;
    for (int rep = -1; rep < o->reps && !rc; rep++) { /* rep -1: the warm-up */
        const int first = bos >= 0 && bos < vocab ? bos : 0;
        tokens[0] = first;
        for (int i = 1; i < n; i++) tokens[i] = (int)(next_rand(&rs) % (uint64_t)vocab);
        if (depth > 0) tokens[0] = (int)(next_rand(&rs) % (uint64_t)vocab);
        if (depth > 0 && *filled == depth) {
            rc = cli_engine_trim(s, 0, depth, &err);
        } else {
            *filled = -1;
            if ((rc = cli_engine_reset(s, &err))) break;
            if (depth > 0) { /* the context the test starts from */
                uint64_t cs = o->seed ^ 0x5DEECE66Dull;
                ctx[0] = first;
                for (int i = 1; i < depth; i++) ctx[i] = (int)(next_rand(&cs) % (uint64_t)vocab);
                if (!(rc = cli_eval(s, ctx, depth, 0, logits, &err))) *filled = depth;
            }
        }
        const double t0 = cli_now();
        if (rc) {
        } else if (is_pp) {
            rc = cli_eval(s, tokens, n, 0, logits, &err);
        } else {
            const int count = rep < 0 ? 1 : n;
            for (int i = 0; i < count && !rc; i++) rc = cli_eval(s, tokens + i, 1, 0, logits, &err);
        }
        const double dt = cli_now() - t0;
        if (rep >= 0) samples[rep] = dt > 0 ? n / dt : 0;
    }
    free(tokens);
    free(logits);
    if (rc) return cli_error(C, "%s", err.msg);
    return 0;
}

static int bench_model(const char *C, cli_job *job, const char *path, bench_opts *o, int *first_row) {
    q35_error err = {0};
    q35_model *m = NULL;
    if (cli_engine_load(job, C, path, NULL, o->convert, &m)) return 1;
    model_facts f = {.path = path};
    const char *slash = strrchr(path, '/');
    f.name = slash && slash[1] ? slash + 1 : path;
    describe(m, &f);
    f.per_token = cli_engine_weight_bytes(job, m);
    const q35_config *cfg = q35_model_config(m);
    const int ctx = cfg->seq_len;
    long need = 0; /* the longest test after the deepest context */
    for (int i = 0; i < o->pp.n; i++) need = o->pp.v[i] > need ? o->pp.v[i] : need;
    for (int i = 0; i < o->tg.n; i++) need = o->tg.v[i] > need ? o->tg.v[i] : need;
    long deepest = 0;
    for (int i = 0; i < o->depth.n; i++) deepest = o->depth.v[i] > deepest ? o->depth.v[i] : deepest;
    if (need + deepest > ctx)
        return cli_engine_unload(job, m), cli_error(C, "-d %ld with a test of %ld tokens: the model's context is %d tokens",
                                            deepest, need, ctx);
    char size[32], params[32];
    human_size(f.size, size, sizeof size);
    human_params(f.params, params, sizeof params);
    double *samples = malloc((size_t)o->reps * sizeof *samples);
    if (!samples) return cli_engine_unload(job, m), cli_error(C, "out of memory");
    int status = 0;
    for (int ti = 0; ti < o->threads.n && !status; ti++) {
        cli_engine *s = NULL;
        const int nt = (int)o->threads.v[ti];
        q35_session_params sp;
        if (cli_session_params(C, &sp)) {
            status = 1;
            break;
        }
        sp.n_threads = nt;
        sp.n_gpu_layers = (int)o->ngl;
        sp.n_ctx = (int)(need + deepest);
        if (o->batch) sp.n_batch = (int)o->batch;
        if (o->kv_type) sp.kv_type = o->kv_type;
        if (cli_engine_open(job, m, &sp, &s, &err)) {
            status = cli_error(C, "%s", err.msg);
            break;
        }
        const char *backend = cli_engine_device(s);
        /* KV cache bytes one position adds for every later token (keys and values, every layer) */
        const double kv_pos = 2.0 * cfg->n_layers * cfg->n_kv_heads *
                              (double)q35_kv_row_bytes(cli_engine_kv_type(s), cfg->head_dim);
        int filled = -1; /* the depth the engine's cache holds */
        for (int di = 0; di < (o->depth.n ? o->depth.n : 1) && !status; di++)
        for (int kind = 0; kind < 2 && !status; kind++) {
            const int depth = o->depth.n ? (int)o->depth.v[di] : 0;
            const int_list *l = kind == 0 ? &o->pp : &o->tg;
            for (int k = 0; k < l->n && !status; k++) {
                const int n = (int)l->v[k];
                if (n == 0) continue;
                /* the decode roofline bounds tg only: a prompt batch reads each weight once */
                const int roofed = o->roofline && kind == 1;
                const double bw_before = roofed ? bandwidth_now(nt) : 0;
                if ((status = run_test(C, s, cfg->vocab_size, q35_token_bos(m), kind == 0, n, depth, o, samples,
                                       &filled)))
                    break;
                const double bw_after = roofed ? bandwidth_now(nt) : 0;
                const double gbs = bw_before > bw_after ? bw_before : bw_after;
                for (int b = 0; b < 2 && roofed; b++) {
                    const double x = b ? bw_after : bw_before;
                    if (x > 0 && (o->bw_lo[ti] == 0 || x < o->bw_lo[ti])) o->bw_lo[ti] = x;
                    if (x > o->bw_hi[ti]) o->bw_hi[ti] = x;
                }
                double mean, sd;
                mean_sd(samples, (int)o->reps, &mean, &sd);
                /* at depth each token also reads the cache (about depth + n/2 positions) */
                const double bytes = (double)f.per_token + kv_pos * (depth + n / 2.0);
                const double roof = kind == 1 && gbs > 0 && f.per_token ? gbs * 1e9 / bytes : 0;
                char test[48];
                if (depth) snprintf(test, sizeof test, "%s%d @ d%d", kind == 0 ? "pp" : "tg", n, depth);
                else snprintf(test, sizeof test, "%s%d", kind == 0 ? "pp" : "tg", n);
                if (o->json) {
                    fprintf(o->out, "%s    {\"model_filename\": \"", *first_row ? "" : ",\n");
                    for (const char *p = f.path; *p; p++) {
                        if (*p == '"' || *p == '\\') fputc('\\', o->out);
                        if ((unsigned char)*p >= 0x20) fputc(*p, o->out);
                    }
                    fprintf(o->out, "\", \"model_type\": \"%s\", \"model_size\": %llu, \"model_n_params\": %llu, "
                           "\"bpw\": %.4f, \"weight_bytes_per_token\": %llu, \"backend\": \"%s\", "
                           "\"n_threads\": %d, \"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, \"test\": \"%s\", "
                           "\"repetitions\": %ld, \"samples_ts\": [",
                           f.type, (unsigned long long)f.size, (unsigned long long)f.params, f.bpw,
                           (unsigned long long)f.per_token, backend, nt, kind == 0 ? n : 0, kind == 1 ? n : 0,
                           depth, test, o->reps);
                    for (long r = 0; r < o->reps; r++) fprintf(o->out, "%s%.4f", r ? ", " : "", samples[r]);
                    fprintf(o->out, "], \"avg_ts\": %.4f, \"stddev_ts\": %.4f", mean, sd);
                    if (roofed && roof > 0)
                        fprintf(o->out, ", \"bandwidth_gbs\": %.3f, \"bandwidth_before_gbs\": %.3f, "
                                        "\"bandwidth_after_gbs\": %.3f, \"roofline_ts\": %.4f, \"roofline_fraction\": %.4f",
                                gbs, bw_before, bw_after, roof, mean / roof);
                    else if (o->roofline)
                        fprintf(o->out, ", \"bandwidth_gbs\": null, \"roofline_ts\": null, \"roofline_fraction\": null");
                    fprintf(o->out, ", \"peak_rss_mib\": %.1f}", peak_rss_mib());
                } else {
                    if (*first_row) {
                        fprintf(o->out, "| model | type | size | params | bpw | backend | threads | test | t/s |%s\n",
                               o->roofline ? " roofline t/s | % of roofline |" : "");
                        fprintf(o->out, "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |%s\n",
                               o->roofline ? " ---: | ---: |" : "");
                    }
                    fprintf(o->out, "| %s | %s | %s | %s | %.4f | %s | %d | %s | %.2f ± %.2f |", f.name, f.type, size,
                           params, f.bpw, backend, nt, test, mean, sd);
                    if (o->roofline) {
                        if (roof > 0) fprintf(o->out, " %.2f | %.1f%% |", roof, 100.0 * mean / roof);
                        else fprintf(o->out, " - | - |");
                    }
                    fprintf(o->out, "\n");
                }
                fflush(stdout);
                *first_row = 0;
            }
        }
        cli_engine_close(s);
    }
    if (!status && !o->json)
        fprintf(o->out, "%s: %.2f MiB of weights read per token\n", f.name, (double)f.per_token / 1048576.0);
    free(samples);
    cli_engine_unload(job, m);
    return status;
}

int cmd_bench(cli_job *job, int argc, char **argv) {
    const char *C = "bench";
    const char *models[MAX_LIST];
    int n_models = 0;
    bench_opts o;
    memset(&o, 0, sizeof o);
    o.reps = 5;
    o.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(C, argc, argv, &i))) return 1
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            VAL();
            if (n_models == MAX_LIST) return cli_error(C, "more than %d models", MAX_LIST);
            models[n_models++] = v;
        }
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) { VAL(); if (parse_list(C, a, v, 0, 1L << 20, &o.pp)) return 1; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) { VAL(); if (parse_list(C, a, v, 0, 1L << 20, &o.tg)) return 1; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (parse_list(C, a, v, 1, 1024, &o.threads)) return 1; }
        else if (!strcmp(a, "-d") || !strcmp(a, "--n-depth")) { VAL(); if (parse_list(C, a, v, 0, 1L << 22, &o.depth)) return 1; }
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) { VAL(); if (cli_int(C, a, v, 1, 100000, &o.reps)) return 1; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            VAL();
            if (!strcmp(v, "json")) o.json = 1;
            else if (!strcmp(v, "md")) o.json = 0;
            else return cli_error(C, "%s %s: give md or json", a, v);
        }
        else if (!strcmp(a, "--roofline")) o.roofline = 1;
        else if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers")) { VAL(); if (cli_int(C, a, v, -1, 1L << 20, &o.ngl)) return 1; }
        else if (!strcmp(a, "--seed")) { VAL(); if (cli_u64(C, a, v, &o.seed)) return 1; }
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) { VAL(); if (cli_int(C, a, v, 1, 1L << 20, &o.batch)) return 1; }
        else if (!strcmp(a, "--kv-type")) {
            VAL();
            if (cli_kv_type(C, a, v)) return 1;
            o.kv_type = v;
        }
        else if (!strcmp(a, "--convert-type")) { VAL(); o.convert = v; }
        else return cli_error(C, "unknown flag '%s' (see q35 bench --help)", a);
#undef VAL
    }
    if (!n_models) return cli_error(C, "no model: q35 bench -m MODEL (q35 synth makes one)");
    if (!o.pp.n) o.pp.v[o.pp.n++] = 512;
    if (!o.tg.n) o.tg.v[o.tg.n++] = 128;
    if (!o.threads.n) o.threads.v[o.threads.n++] = cli_cores();
    int any = 0;
    for (int i = 0; i < o.pp.n; i++) any |= o.pp.v[i] > 0;
    for (int i = 0; i < o.tg.n; i++) any |= o.tg.v[i] > 0;
    if (!any) return cli_error(C, "-p and -n are all 0: nothing to measure");

    char *js = NULL;
    size_t js_len = 0;
    o.out = o.json ? open_memstream(&js, &js_len) : stdout;
    if (!o.out) return cli_error(C, "out of memory");
    int first = 1, status = 0;
    for (int i = 0; i < n_models && !status; i++) status = bench_model(C, job, models[i], &o, &first);
    if (o.json) {
        fclose(o.out);
        if (!status) { /* all or nothing: a failed run prints no JSON */
            printf("{\n  \"bandwidth\": [");
            for (int i = 0; o.roofline && i < o.threads.n; i++)
                printf("%s{\"threads\": %ld, \"gbs\": %.3f, \"min_gbs\": %.3f}", i ? ", " : "", o.threads.v[i],
                       o.bw_hi[i], o.bw_lo[i]);
            printf("],\n  \"results\": [\n%s\n  ],\n  \"peak_rss_mib\": %.1f\n}\n", js ? js : "",
                   peak_rss_mib());
        }
        free(js);
    } else if (!status) {
        if (o.roofline) {
            printf("read bandwidth (1 GiB, best of 5, before and after each tg test; a row's roofline takes the "
                   "higher):");
            for (int i = 0; i < o.threads.n; i++)
                printf("%s %ld thread%s %.1f-%.1f GB/s", i ? "," : "", o.threads.v[i], o.threads.v[i] == 1 ? "" : "s",
                       o.bw_lo[i], o.bw_hi[i]);
            printf("\n");
        }
        cli_engine_report_rss(job, stdout, peak_rss_mib());
    }
    return status;
}
