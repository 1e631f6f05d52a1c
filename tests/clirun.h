/* clirun.h — running the q35 program from a test: its exit status, stdout
 * and stderr; the "one line, non-zero exit" check for bad input; fixtures
 * in a temporary folder. Include once per test program. */
#ifndef Q35_TEST_CLIRUN_H
#define Q35_TEST_CLIRUN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

static char tmpdir[256];
static const char *bin;

typedef struct result {
    int status;   /* exit status, or 128 + signal */
    char *out;    /* stdout */
    char *err;    /* stderr */
} result;

static inline char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    b[fread(b, 1, (size_t)n, f)] = '\0';
    fclose(f);
    return b;
}

/* Runs q35 with NULL-terminated args (each single-quoted for the shell),
 * stdin read from the file in (NULL: /dev/null). */
static inline result run_in(const char *const *args, const char *in) {
    size_t cap = 1024 + (in ? strlen(in) : 0);
    for (int i = 0; args[i]; i++) cap += 4 * strlen(args[i]) + 3;
    char *cmd = malloc(cap), *w = cmd;
    w += sprintf(w, "'%s'", bin);
    for (int i = 0; args[i]; i++) {
        w += sprintf(w, " '");
        for (const char *p = args[i]; *p; p++)
            w += *p == '\'' ? sprintf(w, "'\\''") : sprintf(w, "%c", *p);
        w += sprintf(w, "'");
    }
    sprintf(w, " >%s/out 2>%s/err <'%s'", tmpdir, tmpdir, in ? in : "/dev/null");
    int st = system(cmd);
    free(cmd);
    result r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    char path[512];
    snprintf(path, sizeof path, "%s/out", tmpdir);
    r.out = slurp(path);
    snprintf(path, sizeof path, "%s/err", tmpdir);
    r.err = slurp(path);
    return r;
}

static inline result run(const char *const *args) { return run_in(args, NULL); }
static inline result run_input(const char *const *args, const char *input) { return run_in(args, input); }

static inline void free_result(result *r) {
    free(r->out);
    free(r->err);
}

/* A clean failure: status 1 (not a signal, not a sanitizer's exit), exactly
 * one line on stderr, containing `mention`. */
static inline void expect_error_in(const char *what, const char *mention, const char *const *args,
                                   const char *in) {
    result r = run_in(args, in);
    size_t len = strlen(r.err);
    int one_line = len > 0 && r.err[len - 1] == '\n' && strchr(r.err, '\n') == r.err + len - 1;
    CHECKF(r.status == 1, "%s: exit status %d, want 1 (stderr: %s)", what, r.status, r.err);
    CHECKF(one_line, "%s: stderr is not one line: %s", what, r.err);
    CHECKF(strstr(r.err, mention) != NULL, "%s: stderr does not name '%s': %s", what, mention, r.err);
    free_result(&r);
}

static inline void expect_error(const char *what, const char *mention, const char *const *args) {
    expect_error_in(what, mention, args, NULL);
}

static inline char *fixture(const char *name, const void *data, size_t len) {
    static char paths[64][512];
    static int n;
    char *p = paths[n++ % 64];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (len) fwrite(data, 1, len, f);
    fclose(f);
    return p;
}

static inline void *read_all(const char *path, size_t *len) {
    char *b = slurp(path);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fclose(f);
    return b;
}


/* Sets up tmpdir and bin; call first. */
static inline int clirun_init(const char *name) {
    bin = getenv("Q35_BIN");
    if (!bin || !*bin) bin = "build/q35";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/q35-%s-XXXXXX", name);
    return mkdtemp(tmpdir) ? 0 : -1;
}

static inline void clirun_cleanup(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

#endif
