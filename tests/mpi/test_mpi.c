/* test_mpi.c — q35-mpi under mpirun (2 and 3 ranks, --oversubscribe)
 * against q35 in one process (`make mpi-test`; CI after installing
 * OpenMPI).
 *
 * Bit for bit: perplexity's output and its KL-divergence base file with
 * every position's whole distribution (the log-softmax of the logits, so
 * the logits themselves), and greedy text, for stories260K and stories3M
 * and a tiny model of every architecture (tests/archgen.h), each in fp32
 * and Q3_5 (stories3M's llama2.c Q8_0 file too); pipeline splits by memory, uneven ones, a rank holding one
 * layer, tensor parallel (--tp: every matrix split by rows and gathered,
 * so bit for bit too), and both together. One line and status 1 for: bad
 * --split values, more stages than layers, a rank running another binary,
 * a rank reading another file, a model too big for each rank, a rank
 * alone with too little memory, and hostile files (a NaN scale, a cut). A rank
 * killed with SIGKILL ends the job within 10 s with a line naming it.
 * q35-mpi serve at 2 and 3 ranks against q35 serve and q35 run: greedy and
 * seeded completions, a stream, two at once in two slots, byte for byte;
 * SIGTERM to rank 0 ends the job (status 0), SIGTERM to mpirun and a
 * killed rank end it within 10 s, a bad flag is one line. Run with the
 * ASan build (make SAN=1 mpi-test), every case runs under ASan. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "clirun.h"
#include "srvrun.h"
#include "archgen.h"
#include "io/gguf.h"
#include "io/weights.h"
#include "q35.h"

static const char *q35_bin, *mpi_bin;

/* Under ASan (make SAN=1 mpi-test) every process runs several times
 * slower: the bit-for-bit comparisons cover stories260K and one
 * architecture's model (the plain run covers the rest), the failures all. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
static char text[600]; /* a few short documents */

#define MAX_ARGS 48

/* q35 (np 0) or q35-mpi under mpirun with np ranks, bounded in time. */
static result run_np(int np, const char *const *args) {
    const char *v[MAX_ARGS + 12];
    int n = 0;
    char npb[16];
    snprintf(npb, sizeof npb, "%d", np);
    if (np > 0) {
        bin = "timeout";
        v[n++] = "300";
        v[n++] = "mpirun";
        v[n++] = "-q";
        v[n++] = "--oversubscribe";
        if (geteuid() == 0) v[n++] = "--allow-run-as-root"; /* CI runs as root */
        v[n++] = "-np";
        v[n++] = npb;
        v[n++] = mpi_bin;
    } else {
        bin = q35_bin;
    }
    for (int i = 0; args[i] && n < MAX_ARGS + 10; i++) v[n++] = args[i];
    v[n] = NULL;
    return run(v);
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_all(a, &na), *y = read_all(b, &nb);
    const int same = na == nb && na > 0 && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* stdout without perplexity's timing line (stderr) — identical as printed */
static void compare_ppl(const char *label, const char *model, int np, const char *split, int tp) {
    char base0[700], base1[700], tps[8];
    snprintf(base0, sizeof base0, "%s/base-one.kld", tmpdir);
    snprintf(base1, sizeof base1, "%s/base-mpi.kld", tmpdir);
    snprintf(tps, sizeof tps, "%d", tp);
    const char *one[] = {"perplexity", "-m", model, "-f", text, "-t", "1", "--kl-divergence-base", base0,
                         "--kl-top-k", "0", NULL};
    const char *many[MAX_ARGS] = {"perplexity", "-m", model, "-f", text, "-t", "1", "--kl-divergence-base", base1,
                                  "--kl-top-k", "0"};
    int k = 11;
    if (split) many[k++] = "--split", many[k++] = split;
    if (tp > 1) many[k++] = "--tp", many[k++] = tps;
    many[k] = NULL;
    result a = run_np(0, one), b = run_np(np, many);
    CHECKF(a.status == 0, "%s: q35 perplexity: %s", label, a.err);
    CHECKF(b.status == 0, "%s: %d ranks%s%s%s: %s", label, np, split ? ", --split " : "", split ? split : "",
           tp > 1 ? ", --tp" : "", b.err);
    if (a.status == 0 && b.status == 0) {
        const int same = strcmp(a.out, b.out) == 0, same_lp = same_file(base0, base1);
        CHECKF(same, "%s: %d ranks%s%s (tp %d): perplexity differs:\n%s---\n%s", label, np, split ? " --split " : "",
               split ? split : "", tp, a.out, b.out);
        CHECKF(same_lp, "%s: %d ranks%s%s (tp %d): the log-probabilities at some position differ", label, np,
               split ? " --split " : "", split ? split : "", tp);
        const char *nll = strstr(b.out, "mean NLL");
        printf("%s, %d ranks%s%s%s: perplexity and every position's log-probabilities %s (%.*s)\n", label, np,
               split ? ", --split " : "", split ? split : "", tp > 1 ? ", tensor parallel" : "",
               same && same_lp ? "identical" : "DIFFER", nll ? (int)strcspn(nll, "\n") : 0, nll ? nll : "");
    }
    free_result(&a);
    free_result(&b);
}

static void compare_run(const char *label, const char *model, int np, const char *split, int tp, const char *prompt) {
    char tps[8];
    snprintf(tps, sizeof tps, "%d", tp);
    const char *one[] = {"run", "-m", model, "-p", prompt, "-n", "24", "--temp", "0", "-t", "1", NULL};
    const char *many[MAX_ARGS] = {"run", "-m", model, "-p", prompt, "-n", "24", "--temp", "0", "-t", "1"};
    int k = 11;
    if (split) many[k++] = "--split", many[k++] = split;
    if (tp > 1) many[k++] = "--tp", many[k++] = tps;
    many[k] = NULL;
    result a = run_np(0, one), b = run_np(np, many);
    CHECKF(a.status == 0 && b.status == 0, "%s: greedy run: %s%s", label, a.err, b.err);
    CHECKF(strcmp(a.out, b.out) == 0, "%s: %d ranks (tp %d): greedy text differs:\n%s---\n%s", label, np, tp, a.out,
           b.out);
    free_result(&a);
    free_result(&b);
}

/* A clean failure of the job: status 1, one line naming `mention`. */
static void job_error(const char *what, const char *mention, int np, const char *const *args) {
    result r = run_np(np, args);
    size_t len = strlen(r.err);
    int one_line = len > 0 && r.err[len - 1] == '\n' && strchr(r.err, '\n') == r.err + len - 1;
    CHECKF(r.status == 1, "%s: exit status %d, want 1 (stderr: %s)", what, r.status, r.err);
    CHECKF(one_line, "%s: stderr is not one line: %s", what, r.err);
    CHECKF(strstr(r.err, mention) != NULL, "%s: stderr does not name '%s': %s", what, mention, r.err);
    if (r.status == 1 && one_line) printf("%s: %s", what, r.err);
    free_result(&r);
}

/* src quantized to Q3_5 as tmpdir/name; the path, in p (700 bytes). */
static const char *write_q35(const char *src, const char *name, char *p) {
    snprintf(p, 700, "%s/%s", tmpdir, name);
    const char *args[] = {"quantize", src, p, "--type", "Q3_5", NULL};
    result r = run_np(0, args);
    CHECKF(r.status == 0, "quantizing %s: %s", src, r.err);
    free_result(&r);
    return p;
}

/* ---- the models ------------------------------------------------------------ */

static void stories(const char *label, const char *path, int layers) {
    char lbl[200], split[32];
    compare_ppl(label, path, 2, NULL, 1);
    compare_ppl(label, path, 3, NULL, 1);
    compare_run(label, path, 2, NULL, 1, "Once upon a time");
    compare_run(label, path, 3, NULL, 1, "Once upon a time");
    snprintf(lbl, sizeof lbl, "%s, rank 0 with one layer", label);
    snprintf(split, sizeof split, "1,%d", layers - 1);
    compare_ppl(lbl, path, 2, split, 1);
    snprintf(lbl, sizeof lbl, "%s, the last rank with one layer", label);
    snprintf(split, sizeof split, "1,%d,1", layers - 2);
    compare_ppl(lbl, path, 3, split, 1);
    compare_ppl(label, path, 2, NULL, 2);
    compare_ppl(label, path, 3, NULL, 3);
    compare_run(label, path, 2, NULL, 2, "Once upon a time");
    compare_ppl(label, path, 4, NULL, 2); /* 2 stages of 2 */
}

static void architectures(void) {
    const size_t n = UNDER_ASAN ? 1 : sizeof gen_cases / sizeof gen_cases[0];
    for (size_t i = 0; i < n; i++) {
        arch_case c = gen_cases[i];
        if (c.layers < 3) c.layers = 3; /* a layer for each of 3 ranks */
        char dir[600], f32[700], label[200];
        snprintf(dir, sizeof dir, "%s/arch-%zu", tmpdir, i);
        mkdir(dir, 0755);
        snprintf(f32, sizeof f32, "%s/arch-%zu.gguf", tmpdir, i);
        q35_model *m = NULL;
        q35_error err = {0};
        int rc = gen_folder(&c, dir, 700 + i, gen_read_hp) ? -1 : q35_model_load(&m, dir, NULL, &err);
        if (!rc) rc = q35_model_save_gguf(m, f32, "F32", &err);
        q35_model_free(m);
        CHECKF(rc == 0, "%s: making the model: %s", c.label, err.msg);
        if (rc) continue;
        char name[64];
        snprintf(name, sizeof name, "arch-%zu-q35.gguf", i);
        char q3buf[700];
        const char *q3 = write_q35(f32, name, q3buf);
        for (int k = 0; k < 2; k++) {
            const char *path = k ? q3 : f32;
            snprintf(label, sizeof label, "%s %s", c.model_type, k ? "Q3_5" : "F32");
            compare_ppl(label, path, 2, NULL, 1);
            compare_ppl(label, path, 3, NULL, 1);
            compare_ppl(label, path, 2, NULL, 2);
            compare_run(label, path, 3, NULL, 1, "ab cd ef");
        }
        unlink(q3);
        unlink(f32);
    }
}

/* ---- failures ---------------------------------------------------------------- */

static void bad_splits(const char *model) {
    job_error("--split 2,2 for 5 layers", "add up to 4, the model has 5", 2,
              (const char *[]){"run", "-m", model, "-n", "4", "--split", "2,2", NULL});
    job_error("--split 1,x", "--split 1,x", 2, (const char *[]){"run", "-m", model, "-n", "4", "--split", "1,x", NULL});
    job_error("--split 0,5", "at least 1", 2, (const char *[]){"run", "-m", model, "-n", "4", "--split", "0,5", NULL});
    job_error("--split 5 with 2 ranks", "gives 1 stages; the job has 2", 2,
              (const char *[]){"run", "-m", model, "-n", "4", "--split", "5", NULL});
    job_error("6 ranks for 5 layers", "6 pipeline stages for a model of 5 layers", 6,
              (const char *[]){"run", "-m", model, "-n", "4", NULL});
    job_error("--tp 2 with 3 ranks", "does not divide", 3, (const char *[]){"run", "-m", model, "--tp", "2", NULL});
    job_error("--tp x", "--tp x", 2, (const char *[]){"run", "-m", model, "--tp", "x", NULL});
    job_error("not a q35-mpi command", "not a q35-mpi command", 2, (const char *[]){"info", model, NULL});
}

/* MPMD: rank 0 and rank 1 from two argument lists. */
static result run_mpmd(const char *const *a, const char *const *b) {
    const char *v[2 * MAX_ARGS];
    int n = 0;
    bin = "timeout";
    const char *head[] = {"120", "mpirun", "-q", "--oversubscribe", NULL};
    for (int i = 0; head[i]; i++) v[n++] = head[i];
    if (geteuid() == 0) v[n++] = "--allow-run-as-root";
    for (int i = 0; a[i]; i++) v[n++] = a[i];
    v[n++] = ":";
    for (int i = 0; b[i]; i++) v[n++] = b[i];
    v[n] = NULL;
    return run(v);
}

static void mismatched(const char *q3, const char *f32) {
    /* another binary: a copy with one byte more */
    char other[700], cmd[1600];
    snprintf(other, sizeof other, "%s/q35-mpi-other", tmpdir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && printf x >> '%s'", mpi_bin, other, other);
    CHECK(system(cmd) == 0);
    result r = run_mpmd((const char *[]){"-np", "1", mpi_bin, "run", "-m", q3, "-n", "2", NULL},
                        (const char *[]){"-np", "1", other, "run", "-m", q3, "-n", "2", NULL});
    CHECKF(r.status == 1 && strstr(r.err, "rank 1") && strstr(r.err, "another q35-mpi binary") &&
               strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
           "another binary on rank 1: status %d: %s", r.status, r.err);
    printf("another binary on rank 1: %s", r.err);
    free_result(&r);
    /* another file at the same path: each rank in its own folder */
    char da[700], db[700], la[760], lb[760];
    snprintf(da, sizeof da, "%s/host-a", tmpdir);
    snprintf(db, sizeof db, "%s/host-b", tmpdir);
    mkdir(da, 0755);
    mkdir(db, 0755);
    snprintf(la, sizeof la, "%s/model.gguf", da);
    snprintf(lb, sizeof lb, "%s/model.gguf", db);
    CHECK(symlink(q3, la) == 0 && symlink(f32, lb) == 0);
    r = run_mpmd((const char *[]){"-np", "1", "--wdir", da, mpi_bin, "run", "-m", "model.gguf", "-n", "2", NULL},
                 (const char *[]){"-np", "1", "--wdir", db, mpi_bin, "run", "-m", "model.gguf", "-n", "2", NULL});
    CHECKF(r.status == 1 && strstr(r.err, "rank 1: model.gguf is another file") &&
               strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
           "another model on rank 1: status %d: %s", r.status, r.err);
    printf("another file on rank 1: %s", r.err);
    free_result(&r);
}

/* A model too big for one process, whose halves fit each rank. */
static void memory(const char *model) {
    q35_model_params p = q35_model_default_params();
    p.flags = Q35_OPEN_INSPECT;
    q35_model *m = NULL;
    q35_error err = {0};
    CHECKF(q35_model_load_params(&m, model, &p, &err) == 0, "%s", err.msg);
    if (!m) return;
    const int L = q35_model_config(m)->n_layers;
    const uint64_t whole = q35_model_need_bytes(m, 0, L, 1), a = q35_model_need_bytes(m, 0, L / 2, 1),
                   b = q35_model_need_bytes(m, L / 2, L - L / 2, 1), half = a > b ? a : b;
    q35_model_free(m);
    CHECKF(half < whole, "halves %llu, whole %llu", (unsigned long long)half, (unsigned long long)whole);
    char mem[32], small[32];
    snprintf(mem, sizeof mem, "%llu", (unsigned long long)(half + (whole - half) / 2));
    snprintf(small, sizeof small, "%llu", (unsigned long long)(half / 2));
    setenv("Q35_MEM_AVAILABLE", mem, 1);
    const char *args[] = {"run", "-m", model, "-n", "8", "--temp", "0", NULL};
    bin = q35_bin;
    expect_error("one process, too little memory", "available", args);
    result r = run_np(2, args);
    CHECKF(r.status == 0, "2 ranks with the same memory each: %s", r.err);
    printf("Q35_MEM_AVAILABLE=%s: one process refused, 2 ranks run (%s)\n", mem, r.status ? "FAILED" : "ok");
    free_result(&r);
    setenv("Q35_MEM_AVAILABLE", small, 1);
    job_error("2 ranks, too little memory for each half", "available", 2, args);
    setenv("Q35_MEM_AVAILABLE", "lots", 1);
    job_error("Q35_MEM_AVAILABLE=lots", "Q35_MEM_AVAILABLE=lots", 2, args);
    unsetenv("Q35_MEM_AVAILABLE");
}

/* A file whose last layer's ffn_down has a NaN scale base (rank 0 finds
 * it when it reads the header to plan the split, before any rank loads),
 * and a truncated file. */
static void hostile(const char *q3, int layers) {
    q35_weights w;
    q35_error err = {0};
    memset(&w, 0, sizeof w);
    char name[64];
    snprintf(name, sizeof name, "blk.%d.ffn_down.weight", layers - 1);
    CHECKF(q35_gguf_load_weights(&w, q3, &err) == 0, "%s", err.msg);
    const q35_tensor *t = q35_weights_find(&w, name);
    CHECK(t != NULL);
    if (!t) return q35_weights_free(&w);
    const size_t off = (size_t)((const uint8_t *)t->data - w.file.data);
    size_t len;
    char *bytes = read_all(q3, &len);
    q35_weights_free(&w);
    const float nan = NAN;
    memcpy(bytes + off, &nan, 4);
    const char *bad = fixture("hostile-nan.gguf", bytes, len);
    char split[32];
    snprintf(split, sizeof split, "%d,1", layers - 1);
    job_error("a NaN in the last layer, 2 ranks", name, 2,
              (const char *[]){"run", "-m", bad, "-n", "4", "--split", split, NULL});
    job_error("a NaN in the last layer, 2 ranks, tensor parallel", name, 2,
              (const char *[]){"run", "-m", bad, "-n", "4", "--tp", "2", NULL});
    const char *cut = fixture("hostile-cut.gguf", bytes, len / 2);
    job_error("a truncated file, 2 ranks", "hostile-cut.gguf", 2, (const char *[]){"run", "-m", cut, "-n", "4", NULL});
    free(bytes);
}

/* A rank that cannot load its part (rank 1 alone has too little memory:
 * its own Q35_MEM_AVAILABLE) ends the job with a line naming it. */
static void rank_cannot_load(const char *model) {
    result r = run_mpmd((const char *[]){"-np", "1", mpi_bin, "run", "-m", model, "-n", "2", NULL},
                        (const char *[]){"-np", "1", "env", "Q35_MEM_AVAILABLE=64K", mpi_bin, "run", "-m", model, "-n",
                                         "2", NULL});
    const size_t len = strlen(r.err);
    CHECKF(r.status == 1 && strstr(r.err, "rank 1: ") && strstr(r.err, "available") && len &&
               strchr(r.err, '\n') == r.err + len - 1,
           "rank 1 cannot load: status %d: %s", r.status, r.err);
    printf("rank 1 cannot load: %s", r.err);
    free_result(&r);
}

static void nap(long us) {
    struct timespec ts = {us / 1000000, us % 1000000 * 1000};
    nanosleep(&ts, NULL);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The pid of rank `rank` among mpirun's children (their environment names it), or 0. */
static pid_t find_rank(pid_t mpirun, int rank) {
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    DIR *d = opendir("/proc");
    pid_t found = 0;
    for (struct dirent *e; d && !found && (e = readdir(d));) {
        const pid_t p = (pid_t)atoi(e->d_name);
        if (p <= 0) continue;
        char path[300], buf[8192];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
        FILE *f = fopen(path, "r");
        int ppid = 0;
        if (!f) continue;
        const int ok = fscanf(f, "%*d (%*[^)]) %*c %d", &ppid) == 1;
        fclose(f);
        if (!ok || ppid != mpirun) continue;
        snprintf(path, sizeof path, "/proc/%d/environ", (int)p);
        if (!(f = fopen(path, "r"))) continue;
        const size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
            buf[n] = 0;
            if (!strcmp(buf + i, want)) found = p;
        }
    }
    if (d) closedir(d);
    return found;
}

/* Rank 1 killed in the middle of a perplexity run: the job ends within
 * 10 s, its last line naming rank 1. */
static void killed_rank(const char *model, const char *long_text) {
    char out[600], errp[600];
    snprintf(out, sizeof out, "%s/killed.out", tmpdir);
    snprintf(errp, sizeof errp, "%s/killed.err", tmpdir);
    fflush(stdout); /* the child must not write this process's buffered lines again */
    const pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(out, "w", stdout) || !freopen(errp, "w", stderr)) _exit(126);
        if (geteuid() == 0)
            execlp("mpirun", "mpirun", "-q", "--oversubscribe", "--allow-run-as-root", "-np", "3", mpi_bin,
                   "perplexity", "-m", model, "-f", long_text, "-t", "1", (char *)NULL);
        else
            execlp("mpirun", "mpirun", "-q", "--oversubscribe", "-np", "3", mpi_bin, "perplexity", "-m", model, "-f",
                   long_text, "-t", "1", (char *)NULL);
        _exit(127);
    }
    pid_t victim = 0;
    for (double t0 = now(); !victim && now() - t0 < 60;) {
        victim = find_rank(pid, 1);
        if (!victim) nap(50000);
    }
    CHECKF(victim > 0, "no rank 1 among mpirun's children");
    /* into the scoring: the progress bar shows */
    for (double t0 = now(); victim && now() - t0 < 60; nap(50000)) {
        size_t n;
        char *e = read_all(errp, &n);
        const int going = strstr(e, "documents") != NULL;
        free(e);
        if (going) break;
    }
    double t_kill = now(), took = -1;
    int st = 0;
    if (victim) kill(victim, SIGKILL);
    for (; now() - t_kill < 60; nap(20000))
        if (waitpid(pid, &st, WNOHANG) == pid) {
            took = now() - t_kill;
            break;
        }
    if (took < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    size_t n;
    char *e = read_all(errp, &n), *last = e;
    for (char *p = e; *p; p++) /* the last line (after the progress bar's carriage returns) */
        if ((*p == '\n' || *p == '\r') && p[1]) last = p + 1;
    char want[64];
    snprintf(want, sizeof want, "rank 1 (pid %d", (int)victim);
    CHECKF(took >= 0 && took <= 10, "a killed rank: the job took %.1f s to end", took);
    CHECKF(WIFEXITED(st) ? WEXITSTATUS(st) != 0 : 1, "a killed rank: the job ended with status 0");
    CHECKF(strstr(last, want) && strstr(last, "is gone"), "a killed rank: the last line does not name it: %s", last);
    printf("rank 1 killed (SIGKILL): the job ended %.1f s later with: %s", took, last);
    free(e);
}

/* ---- q35-mpi serve ------------------------------------------------------------- */

/* a completion's text ("" when the request failed or the answer is not one) */
static char *completion(int port, const char *body) {
    reply r;
    char *text = NULL;
    if (http_req(port, "POST", "/v1/completions", NULL, body, &r) == 0 && r.status == 200) {
        cJSON *j = cJSON_Parse(r.body);
        const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "text");
        if (cJSON_IsString(t)) text = strdup(t->valuestring);
        cJSON_Delete(j);
    }
    CHECKF(text != NULL, "%s: status %d %s", body, r.status, r.body ? r.body : "");
    reply_free(&r);
    return text ? text : strdup("");
}

/* a streamed completion's text, its events' texts joined ("" when the
 * stream is malformed or does not end with data: [DONE]) */
static char *streamed(int port, const char *body) {
    reply r;
    size_t cap = 1;
    char *text = calloc(1, cap);
    int done = 0;
    if (http_req(port, "POST", "/v1/completions", NULL, body, &r) == 0 && r.status == 200) {
        for (const char *p = r.body; p && *p && !done;) {
            const char *e = strstr(p, "\n\n");
            if (!e || strncmp(p, "data: ", 6)) break;
            if (!strncmp(p, "data: [DONE]\n\n", 14)) {
                done = e[2] == '\0';
                break;
            }
            cJSON *j = cJSON_ParseWithLength(p + 6, (size_t)(e - p - 6));
            const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "text");
            if (cJSON_IsString(t)) {
                text = realloc(text, cap += strlen(t->valuestring));
                strcat(text, t->valuestring);
            }
            cJSON_Delete(j);
            p = e + 2;
        }
    }
    CHECKF(done, "stream %s: status %d, no data: [DONE] at its end: %s", body, r.status, r.body ? r.body : "");
    reply_free(&r);
    if (!done) text[0] = '\0';
    return text;
}

/* the requests: greedy and seeded, non-streamed */
static const char *const serve_bodies[] = {
    "{\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"temperature\":0}",
    "{\"prompt\":\"The dog ran to the park\",\"max_tokens\":60,\"temperature\":0}",
    "{\"prompt\":\"Lily and Tom\",\"max_tokens\":50,\"temperature\":0.8,\"seed\":7}",
};
#define N_BODIES (sizeof serve_bodies / sizeof serve_bodies[0])

typedef struct concurrent {
    int port;
    const char *body;
    char *text;
} concurrent;

static void *complete_one(void *arg) {
    concurrent *c = arg;
    c->text = completion(c->port, c->body);
    return NULL;
}

/* mpirun -q --oversubscribe -np np q35-mpi (server_start_with's prefix) */
static const char *const *mpirun_pre(int np, char *npb, const char **v) {
    int n = 0;
    snprintf(npb, 16, "%d", np);
    v[n++] = "mpirun";
    v[n++] = "-q";
    v[n++] = "--oversubscribe";
    if (geteuid() == 0) v[n++] = "--allow-run-as-root";
    v[n++] = "-np";
    v[n++] = npb;
    v[n++] = mpi_bin;
    v[n] = NULL;
    return v;
}

/* The job's stderr has no line from q35-mpi but its start line. */
static int quiet_log(const char *log) {
    size_t n;
    char *e = read_all(log, &n);
    int quiet = 1;
    for (char *p = e; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
        if (!strncmp(p, "q35-mpi", 7) && strncmp(p, "q35-mpi serve: ", 15)) quiet = 0;
    free(e);
    return quiet;
}

/* np ranks serving model with 2 slots: every answer byte for byte q35
 * serve's (want), alone, streamed and two at once; then stopped by
 * SIGTERM to rank 0 (status 0 within 10 s, nothing printed). */
static void serve_ranks(const char *model, int np, char *const *want) {
    char npb[16];
    const char *pre[12];
    const char *args[] = {"-m", model, "-t", "1", "-np", "2", "-c", "256", NULL};
    server s;
    if (server_start_with(&s, mpirun_pre(np, npb, pre), tmpdir, "mpi-serve", args)) {
        CHECKF(0, "%d ranks: q35-mpi serve did not start (log %s)", np, s.log);
        return;
    }
    int same = 0, total = 0;
    for (size_t i = 0; i < N_BODIES; i++, total++) {
        char *t = completion(s.port, serve_bodies[i]);
        CHECKF(!strcmp(t, want[i]), "%d ranks: %s:\n  q35-mpi '%s'\n  q35     '%s'", np, serve_bodies[i], t, want[i]);
        same += !strcmp(t, want[i]);
        free(t);
    }
    /* streamed: the events' texts join into the same text */
    char body[300];
    snprintf(body, sizeof body, "%.*s,\"stream\":true}", (int)strlen(serve_bodies[1]) - 1, serve_bodies[1]);
    char *t = streamed(s.port, body);
    CHECKF(!strcmp(t, want[1]), "%d ranks: streamed '%s', want '%s'", np, t, want[1]);
    same += !strcmp(t, want[1]);
    total++;
    free(t);
    /* two at once, one slot each */
    const double steps0 = server_metric(s.port, NULL, "q35_steps_total"),
                 over0 = server_metric(s.port, NULL, "q35_steps_overlapped_total"),
                 gen0 = server_metric(s.port, NULL, "q35_tokens_predicted_total");
    concurrent c[2] = {{s.port, serve_bodies[1], NULL}, {s.port, serve_bodies[2], NULL}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, complete_one, &c[k]);
    for (int k = 0; k < 2; k++) {
        pthread_join(th[k], NULL);
        const int eq = !strcmp(c[k].text, want[k + 1]);
        CHECKF(eq, "%d ranks, two at once: '%s', want '%s'", np, c[k].text, want[k + 1]);
        same += eq;
        total++;
        free(c[k].text);
    }
    const double steps = server_metric(s.port, NULL, "q35_steps_total") - steps0,
                 gen = server_metric(s.port, NULL, "q35_tokens_predicted_total") - gen0;
    /* the two slots step in two groups, one's batch in the stages while the other's is sampled */
    const double over = server_metric(s.port, NULL, "q35_steps_overlapped_total") - over0;
    CHECKF(steps > 0 && gen >= 110 && over >= steps / 4, "%d ranks, two at once: %.0f tokens in %.0f steps, %.0f overlapped",
           np, gen, steps, over);
    /* SIGTERM to rank 0: the server stops, the job ends (under ASan every
     * rank's exit takes seconds more: LeakSanitizer's scan, 5 s with 2
     * ranks and 10 s with 3 for q35-mpi run alike) */
    const pid_t r0 = find_rank(s.pid, 0);
    CHECKF(r0 > 0, "%d ranks: no rank 0 among mpirun's children", np);
    const double t0 = now(), bound = UNDER_ASAN ? 60 : 10;
    if (r0 > 0) kill(r0, SIGTERM);
    const int st = server_stop(&s, 0, bound);
    const double took = now() - t0;
    CHECKF(st == 0, "%d ranks: SIGTERM to rank 0: exit status %d (-1: still running after %.0f s; log %s)", np, st,
           bound, s.log);
    CHECKF(quiet_log(s.log), "%d ranks: the clean stop printed a q35-mpi line (log %s)", np, s.log);
    printf("q35-mpi serve, %d ranks, 2 slots: %d of %d answers identical to q35 serve's (greedy, seeded, streamed, "
           "two at once: %.0f tokens in %.0f steps, %.0f of them sent while another was in the stages); SIGTERM to rank 0 "
           "ended the job in %.2f s with status %d\n", np, same, total, gen, steps, over, took, st);
}

/* SIGTERM to mpirun (Ctrl-C), and rank 1 killed, while serving. */
static void serve_stops(const char *model) {
    char npb[16];
    const char *pre[12];
    const char *args[] = {"-m", model, "-t", "1", NULL};
    for (int k = 0; k < 2; k++) {
        server s;
        if (server_start_with(&s, mpirun_pre(2, npb, pre), tmpdir, "mpi-serve-stop", args)) {
            CHECKF(0, "q35-mpi serve did not start (log %s)", s.log);
            return;
        }
        char *t = completion(s.port, serve_bodies[0]);
        free(t);
        const pid_t r1 = find_rank(s.pid, 1);
        CHECKF(r1 > 0, "no rank 1 among mpirun's children");
        const double t0 = now();
        if (k == 0) kill(s.pid, SIGTERM);
        else if (r1 > 0) kill(r1, SIGKILL);
        const int st = server_stop(&s, 0, 10);
        const double took = now() - t0;
        size_t n;
        char *e = read_all(s.log, &n), *last = e;
        for (char *p = e; *p; p++)
            if (*p == '\n' && p[1]) last = p + 1;
        if (k == 0) {
            /* mpirun's own status is 1 after it was signalled, whatever the ranks did */
            CHECKF(st >= 0, "SIGTERM to mpirun: the job still ran after 10 s (log %s)", s.log);
            CHECKF(quiet_log(s.log), "SIGTERM to mpirun: a q35-mpi line: %s", e);
            printf("q35-mpi serve, SIGTERM to mpirun: the job ended in %.2f s, status %d (mpirun's), no error line; "
                   "rank 0's last line: %s", took, st, last);
        } else {
            char want[64];
            snprintf(want, sizeof want, "rank 1 (pid %d", (int)r1);
            CHECKF(st > 0, "rank 1 killed while serving: status %d after 10 s", st);
            CHECKF(strstr(last, want) && strstr(last, "is gone"), "rank 1 killed while serving: last line %s", last);
            printf("q35-mpi serve, rank 1 killed (SIGKILL): the job ended in %.2f s, status %d, with: %s", took, st,
                   last);
        }
        free(e);
    }
}

static void serve(const char *model) {
    /* q35 serve's answers, and q35 run's text for the greedy ones */
    char *want[N_BODIES] = {0};
    server s;
    const char *args[] = {"-m", model, "-t", "1", "-np", "2", "-c", "256", NULL};
    if (server_start(&s, q35_bin, tmpdir, "serve", args)) {
        CHECKF(0, "q35 serve did not start (log %s)", s.log);
        return;
    }
    for (size_t i = 0; i < N_BODIES; i++) want[i] = completion(s.port, serve_bodies[i]);
    CHECKF(server_stop(&s, SIGTERM, 30) == 0, "q35 serve's exit status (log %s)", s.log);
    const char *prompts[] = {"Once upon a time", "The dog ran to the park"}, *ns[] = {"40", "60"};
    for (int i = 0; i < 2; i++) {
        const char *run_args[] = {"run", "-m", model, "-p", prompts[i], "-n", ns[i], "--temp", "0", "-t", "1", NULL};
        result r = run_np(0, run_args);
        const size_t lp = strlen(prompts[i]);
        CHECKF(r.status == 0 && !strncmp(r.out, prompts[i], lp) && !strncmp(r.out + lp, want[i], strlen(want[i])) &&
                   strspn(r.out + lp + strlen(want[i]), "\n") == strlen(r.out + lp + strlen(want[i])),
               "q35 run's greedy text '%s' is not the prompt and q35 serve's '%s'", r.out, want[i]);
        free_result(&r);
    }
    serve_ranks(model, 2, want);
    serve_ranks(model, 3, want);
    serve_stops(model);
    job_error("q35-mpi serve, an unknown flag", "--bogus", 2, (const char *[]){"serve", "-m", model, "--bogus", NULL});
    job_error("q35-mpi serve, --ctx-size beyond the model's", "--ctx-size", 2,
              (const char *[]){"serve", "-m", model, "--port", "0", "-c", "100000", NULL});
    for (size_t i = 0; i < N_BODIES; i++) free(want[i]);
}

int main(void) {
    q35_bin = getenv("Q35_BIN");
    mpi_bin = getenv("Q35_MPI_BIN");
    if (!q35_bin || !mpi_bin) {
        fprintf(stderr, "set Q35_BIN and Q35_MPI_BIN (make mpi-test does)\n");
        return 2;
    }
    static char abs_mpi[4096];
    if (realpath(mpi_bin, abs_mpi)) mpi_bin = abs_mpi; /* ranks may run in other folders */
    if (system("mpirun --version >/dev/null 2>&1") != 0) {
        SKIP("no mpirun (apt-get install openmpi-bin libopenmpi-dev)");
        TEST_END();
    }
    if (clirun_init("mpi")) return 2;
    /* containers often forbid the cross-memory attach OpenMPI's shared memory uses */
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    snprintf(text, sizeof text, "%s/docs.txt", tmpdir);
    const char docs[] = "One day a cat sat on the mat and looked at the sun.\n\n"
                        "The dog ran to the park. It was happy.\n\nab cd ef gh ij kl mn op qr st uv wx yz\n\n"
                        "Lily and Tom played with a big red ball all day long, and then they went home.\n";
    fixture("docs.txt", docs, sizeof docs - 1);

    char p260[1024], p3m[1024], dev[1024];
    shared_path(p260, sizeof p260, "models/stories260K/stories260K.bin");
    shared_path(p3m, sizeof p3m, "models/stories3M/stories3M-q80.bin");
    shared_path(dev, sizeof dev, "data/tinystories-dev.txt");
    if (access(p260, R_OK) || access(p3m, R_OK) || access(dev, R_OK)) {
        SKIP("../shared models or text missing");
        TEST_END();
    }
    char b260[700], b3m[700], f260[700], f3m[700];
    const char *q260 = write_q35(p260, "stories260K-q35.gguf", b260), *q3m = write_q35(p3m, "stories3M-q35.gguf", b3m);
    snprintf(f260, sizeof f260, "%s/stories260K-f32.gguf", tmpdir);
    snprintf(f3m, sizeof f3m, "%s/stories3M-f32.gguf", tmpdir);
    const char *conv[] = {"convert", p260, f260, NULL}, *conv3[] = {"convert", p3m, f3m, "--type", "F32", NULL};
    result c = run_np(0, conv), c3 = run_np(0, conv3);
    CHECKF(c.status == 0 && c3.status == 0, "convert: %s%s", c.err, c3.err);
    free_result(&c);
    free_result(&c3);

    stories("stories260K", p260, 5);
    stories("stories260K Q3_5", q260, 5);
    if (UNDER_ASAN) {
        printf("under ASan: bit-for-bit comparisons of stories260K and one architecture only (make mpi-test: all)\n");
    } else {
        stories("stories3M F32", f3m, 6);
        stories("stories3M Q3_5", q3m, 6);
        compare_ppl("stories3M Q8_0 (llama2.c file)", p3m, 2, NULL, 1);
    }
    architectures();
    bad_splits(p260);
    mismatched(q260, f260);
    memory(q3m);
    hostile(q260, 5);
    rank_cannot_load(q3m);
    killed_rank(p260, dev);
    serve(p260);
    clirun_cleanup();
    TEST_END();
}
