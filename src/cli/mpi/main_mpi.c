/* main_mpi.c — the q35-mpi program (`make mpi`): run, perplexity, bench
 * and serve with the model spread over the ranks of an MPI job,
 *
 *   mpirun -q -np N ./q35-mpi run|perplexity|bench|serve -m MODEL [flags]
 *          [--split a,b,c] [--tp T] [--mpi-timeout S]
 *
 * Rank 0 runs the command as q35 would (same flags, same output); the
 * others serve it (src/dist/mpi/job.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "dist/mpi/job.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mpirun -q -np N q35-mpi COMMAND [flags] [--split a,b,c] [--tp T] [--mpi-timeout S]\n"
            "  run         generate text from a prompt      (flags: q35 run --help)\n"
            "  perplexity  score a text file                (flags: q35 perplexity --help)\n"
            "  bench       prompt and generation speed      (flags: q35 bench --help)\n"
            "  serve       the OpenAI-compatible server     (flags: q35 serve --help); SIGTERM or\n"
            "              SIGINT to rank 0 (its pid is printed) ends the job cleanly\n"
            "  --split a,b,c   layers per pipeline stage (default: in proportion to each rank's memory)\n"
            "  --tp T          ranks per stage, splitting every matrix between them (tensor parallel; default 1)\n"
            "  --mpi-timeout S longest wait for another rank's answer, in seconds (default 600)\n"
            "Rank 0 tokenizes, samples and prints; the others hold their layers. mpirun -q keeps mpirun's\n"
            "own banners out, so a failure is one line.\n");
}

/* Takes q35-mpi's own flags out of argv; a bad value is described in bad. */
static void strip_flags(int *argc, char **argv, q35_job_opts *o, char *bad, size_t cap) {
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const int ours = !strcmp(a, "--split") || !strcmp(a, "--tp") || !strcmp(a, "--mpi-timeout");
        if (!ours) {
            argv[w++] = argv[i];
            continue;
        }
        if (i + 1 >= *argc) {
            if (!bad[0]) snprintf(bad, cap, "%s needs a value", a);
            continue;
        }
        const char *v = argv[++i];
        char *end;
        if (!strcmp(a, "--split")) {
            o->split = v;
        } else if (!strcmp(a, "--tp")) {
            const long t = strtol(v, &end, 10);
            if (end == v || *end || t < 1 || t > 64) {
                if (!bad[0]) snprintf(bad, cap, "--tp %s: give 1 to 64 ranks per stage", v);
            } else {
                o->tp = (int)t;
            }
        } else {
            const double s = strtod(v, &end);
            if (end == v || *end || !(s >= 1 && s <= 1e7)) {
                if (!bad[0]) snprintf(bad, cap, "--mpi-timeout %s: give 1 to 10000000 seconds", v);
            } else {
                o->timeout_s = s;
            }
        }
    }
    argv[w] = NULL;
    *argc = w;
}

static int dispatch(q35_job *j, int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run")) return cmd_run(j, argc - 1, argv + 1);
    if (!strcmp(cmd, "perplexity")) return cmd_perplexity(j, argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(j, argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(j, argc - 1, argv + 1);
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "q35-mpi: '%s' is not a q35-mpi command: run, perplexity, bench or serve (q35 does the rest)\n", cmd);
    return 1;
}

int main(int argc, char **argv) {
    q35_job_opts o = {.tp = 1, .timeout_s = 600};
    char bad[256] = "";
    strip_flags(&argc, argv, &o, bad, sizeof bad);
    /* this rank's memory setting; a malformed one fails this rank's load */
    const char *mem = getenv("Q35_MEM_AVAILABLE");
    char mem_bad[160] = "";
    if (mem && *mem) {
        uint64_t b;
        if (!strcasecmp(mem, "off")) o.mem_available = -1;
        else if (q35_parse_size(mem, &b) == 0 && b > 0 && b <= (uint64_t)INT64_MAX) o.mem_available = (int64_t)b;
        else snprintf(mem_bad, sizeof mem_bad, "Q35_MEM_AVAILABLE=%.64s: give a size such as 16G, or off", mem);
    }
    o.mem_error = mem_bad[0] ? mem_bad : NULL;
    /* serve: SIGINT/SIGTERM blocked before MPI starts its threads, so they
     * reach rank 0's sigwait (cmd_serve) and no thread of MPI's; ranks > 0
     * take them again on their main thread (the job's handler) */
    o.serving = argc >= 2 && !strcmp(argv[1], "serve");
    sigset_t stop, before;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    if (o.serving) pthread_sigmask(SIG_BLOCK, &stop, &before);
    q35_job *j = NULL;
    q35_error err = {0};
    const int rc = q35_job_start(&j, &argc, &argv, &o, &err);
    if (o.serving && (rc || q35_job_rank(j) != 0)) pthread_sigmask(SIG_SETMASK, &before, NULL);
    if (rc) {
        if (!j || q35_job_rank(j) == 0) fprintf(stderr, "q35-mpi: %s\n", err.msg);
        q35_job_abandon(j);
        return 1;
    }
    if (q35_job_rank(j) != 0) return q35_job_serve(j);
    int status = 1;
    if (bad[0]) fprintf(stderr, "q35-mpi: %s\n", bad);
    else status = dispatch(j, argc, argv);
    fflush(stdout);
    return q35_job_end(j, status);
}
