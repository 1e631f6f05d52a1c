/* test_outfile.c — q35_outfile (core/outfile.h), then every writer of the
 * q35 program over every kind of thing that can sit at an output path.
 *
 * The helper: a new file, a replaced one (its mode kept), symbolic links
 * (same folder, another folder, a chain, dangling), a folder, /dev/null,
 * /dev/full, a FIFO, a socket, a read-only folder, the disk-space check
 * and its units, injected write failures (ENOSPC through write, pwrite
 * and the GGUF writer: the old file whole, no temporary left), a real
 * small file system where one can be made without root (a tmpfs in a new
 * user and mount namespace), intermediate (scratch) files.
 *
 * The writers: convert, quantize, quantize --calib (stage files and the
 * tuner's writer), synth, imatrix -o, perplexity --kl-divergence-base; the
 * outputs: a regular file (the reference bytes), a FIFO with a reader, a
 * FIFO with no reader for a while (the writer waits; nothing at the path
 * changes; a reader that comes later gets the whole file), a symlink to a
 * file, a symlink into another folder, a dangling symlink, a folder,
 * /dev/null, a read-only folder, /dev/full (a real ENOSPC), a 4 KiB file
 * system. After each: the exit status, one line on failure, and that the
 * path is still what it was or holds the reference bytes, and that its
 * folder holds nothing else. Everything a child does is bounded by
 * alarm(). As root, the read-only cases run as nobody (root writes into
 * read-only folders), and "/dev/null" and "/dev/full" are nodes of those
 * devices the test makes in its folder, "/dev/stdout" a link of its own
 * to /proc/self/fd/1: a writer that regressed would otherwise replace the
 * machine's. */
#define _GNU_SOURCE /* unshare, mount: the small file system */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clirun.h"
#include "core/outfile.h"
#include "format/dtype.h"
#include "io/gguf.h"

#define NOBODY 65534

static char dev_null[512] = "/dev/null", dev_full[512] = "/dev/full", dev_stdout[512] = "/dev/stdout";
static int devices_ok; /* the three above are safe to write through */

static char *at(char *buf, const char *rel) { /* tmpdir/rel */
    snprintf(buf, 512, "%s/%s", tmpdir, rel);
    return buf;
}

static void make_dir(const char *rel) {
    char p[512];
    mkdir(at(p, rel), 0755);
}

static void put_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Entries of a folder (without . and ..), their names into names. */
static int entries(const char *dir, char *names, size_t cap) {
    DIR *d = opendir(dir);
    int n = 0;
    if (names && cap) names[0] = '\0';
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        if (names) snprintf(names + strlen(names), cap - strlen(names), " %s", e->d_name);
    }
    if (d) closedir(d);
    return d ? n : -1;
}

/* A whole file (malloc'ed), or NULL when it cannot be read. */
static uint8_t *load(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (!f) return NULL;
    uint8_t *b = NULL;
    size_t cap = 0;
    for (size_t n = 1; n > 0;) {
        if (*len == cap) {
            uint8_t *nb = realloc(b, cap = 2 * cap + 65536);
            if (!nb) break;
            b = nb;
        }
        *len += n = fread(b + *len, 1, cap - *len, f);
    }
    fclose(f);
    return b;
}

static int same_bytes(const char *path, const void *data, size_t len) {
    size_t n;
    uint8_t *b = load(path, &n);
    const int same = b && n == len && memcmp(b, data, len) == 0;
    free(b);
    return same;
}

static int kind(const char *path) { /* S_IFMT bits of lstat, 0 if none */
    struct stat st;
    return lstat(path, &st) == 0 ? (int)(st.st_mode & S_IFMT) : 0;
}

/* ---- the helper itself -------------------------------------------------- */

static int lib_write(const char *path, const q35_outfile_opts *o, const void *data, size_t len, q35_error *err) {
    q35_outfile *f;
    int rc = q35_outfile_open(&f, path, o, err);
    if (!rc && (rc = q35_outfile_write(f, data, len, err))) q35_outfile_abort(f);
    else if (!rc) rc = q35_outfile_commit(f, err);
    return rc;
}

static void test_units(void) {
    const struct { uint64_t n; const char *text; } u[] = {
        {0, "0 bytes"}, {1023, "1023 bytes"}, {1536, "1.5 KiB"}, {124 * 1024, "124.0 KiB"},
        {5u << 20, "5.0 MiB"}, {3ull << 30, "3.0 GiB"}, {UINT64_MAX / 2, "8.0 EiB"}};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        char b[32];
        q35_bytes_text(u[i].n, b, sizeof b);
        CHECKF(!strcmp(b, u[i].text), "%llu bytes as '%s', want '%s'", (unsigned long long)u[i].n, b, u[i].text);
    }
}

static void test_files_and_links(void) {
    char d[512], other[512], p[512], q[512], r[512], names[256];
    q35_error err = {0};
    make_dir("lib");
    make_dir("lib/other");
    at(d, "lib");
    at(other, "lib/other");
    /* a new file: 0644 */
    at(p, "lib/new");
    CHECKF(lib_write(p, NULL, "abc", 3, &err) == 0, "new file: %s", err.msg);
    struct stat st;
    CHECK(same_bytes(p, "abc", 3) && stat(p, &st) == 0 && (st.st_mode & 0777) == 0644);
    /* a replaced file keeps its mode */
    chmod(p, 0600);
    CHECKF(lib_write(p, NULL, "defg", 4, &err) == 0, "replace: %s", err.msg);
    CHECK(same_bytes(p, "defg", 4) && stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    /* links: same folder, another folder, a chain; the links stay links */
    at(q, "lib/other/file");
    put_file(q, "old");
    at(p, "lib/to-other");
    CHECK(symlink("other/file", p) == 0);
    CHECKF(lib_write(p, NULL, "linked", 6, &err) == 0, "through a link: %s", err.msg);
    CHECK(kind(p) == S_IFLNK && same_bytes(q, "linked", 6));
    at(r, "lib/chain");
    CHECK(symlink("to-other", r) == 0);
    CHECKF(lib_write(r, NULL, "chained", 7, &err) == 0, "through two links: %s", err.msg);
    CHECK(kind(r) == S_IFLNK && kind(p) == S_IFLNK && same_bytes(q, "chained", 7));
    char to[64] = {0};
    CHECK(readlink(r, to, sizeof to - 1) == 8 && !strcmp(to, "to-other"));
    CHECKF(entries(d, names, sizeof names) == 4, "lib holds%s", names);
    CHECKF(entries(other, names, sizeof names) == 1, "lib/other holds%s", names);
    /* a dangling link: refused, nothing created */
    at(p, "lib/dangling");
    CHECK(symlink("missing", p) == 0);
    int rc = lib_write(p, NULL, "x", 1, &err);
    CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "does not exist") && strstr(err.msg, p), "dangling: %s", err.msg);
    CHECK(kind(p) == S_IFLNK && entries(d, NULL, 0) == 5);
    /* a folder */
    rc = lib_write(other, NULL, "x", 1, &err);
    CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "is a folder"), "folder: %s", err.msg);
    CHECK(q35_outfile_check(other, NULL, &err) == Q35_ERR_IO);
    /* a missing folder */
    at(p, "lib/no-such/x");
    rc = lib_write(p, NULL, "x", 1, &err);
    CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "No such file"), "missing folder: %s", err.msg);
}

/* As root: private nodes of /dev/null and /dev/full, a private
 * /dev/stdout; -1 if they cannot be made. */
static int private_devices(void) {
    if (geteuid() != 0) return 0;
    snprintf(dev_stdout, sizeof dev_stdout, "%s/devs/stdout", tmpdir);
    const char *dev[2] = {"/dev/null", "/dev/full"};
    char *mine[2] = {dev_null, dev_full};
    make_dir("devs");
    for (int i = 0; i < 2; i++) {
        struct stat st;
        snprintf(mine[i], sizeof dev_null, "%s/devs/%s", tmpdir, dev[i] + 5);
        int fd = -1;
        if (stat(dev[i], &st) != 0 || !S_ISCHR(st.st_mode) || mknod(mine[i], S_IFCHR | 0666, st.st_rdev) != 0 ||
            (fd = open(mine[i], O_WRONLY)) < 0)
            return -1;
        close(fd);
    }
    return symlink("/proc/self/fd/1", dev_stdout);
}

static void test_devices(void) {
    q35_error err = {0};
    struct stat a, b;
    CHECK(stat(dev_null, &a) == 0);
    CHECKF(lib_write(dev_null, NULL, "x", 1, &err) == 0, "/dev/null: %s", err.msg);
    CHECK(stat(dev_null, &b) == 0 && S_ISCHR(b.st_mode) && a.st_rdev == b.st_rdev);
    int rc = lib_write(dev_full, NULL, "x", 1, &err);
    CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "No space left on device"), "/dev/full: %s", err.msg);
    CHECK(stat(dev_full, &b) == 0 && S_ISCHR(b.st_mode));
    const q35_outfile_opts seeks = {.seeks = 1};
    rc = lib_write(dev_null, &seeks, "x", 1, &err);
    CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "character device"), "/dev/null for a seeking writer: %s", err.msg);
    CHECK(q35_outfile_check(dev_null, &seeks, &err) == Q35_ERR_IO && q35_outfile_check(dev_null, NULL, &err) == 0);
}

/* A child that reads fifo into dest (bounded by alarm). */
static pid_t fifo_reader(const char *fifo, const char *dest) {
    pid_t pid = fork();
    if (pid == 0) {
        alarm(300);
        int in = open(fifo, O_RDONLY), out = open(dest, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        char buf[65536];
        ssize_t n = -1;
        while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)n) != n) _exit(2);
        _exit(n != 0);
    }
    return pid;
}

/* Ends a reader still waiting for a writer (end of file), then reaps it;
 * returns its exit status. A reader stuck on a FIFO that is no longer at
 * the path (a writer replaced it) is killed after 30 s. */
static int end_reader(const char *fifo, pid_t reader) {
    int st = 0;
    for (int i = 0;; i++) {
        pid_t w = waitpid(reader, &st, WNOHANG);
        if (w == reader) break;
        if (kind(fifo) == S_IFIFO) {
            int fd = open(fifo, O_WRONLY | O_NONBLOCK);
            if (fd >= 0) close(fd);
        }
        if (i == 3000) kill(reader, SIGKILL);
        usleep(10000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_fifo_and_socket(void) {
    char fifo[512], dest[512], sock[512];
    q35_error err = {0};
    make_dir("pipes");
    at(fifo, "pipes/fifo");
    at(dest, "fifo.out");
    CHECK(mkfifo(fifo, 0644) == 0);
    pid_t r = fifo_reader(fifo, dest);
    CHECKF(lib_write(fifo, NULL, "through the pipe", 16, &err) == 0, "FIFO: %s", err.msg);
    CHECK(end_reader(fifo, r) == 0 && same_bytes(dest, "through the pipe", 16) && kind(fifo) == S_IFIFO);
    const q35_outfile_opts seeks = {.seeks = 1};
    int rc = lib_write(fifo, &seeks, "x", 1, &err); /* refused before opening: no reader needed */
    CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "a FIFO"), "FIFO for a seeking writer: %s", err.msg);
    /* a Unix socket: connected to and written into */
    at(sock, "pipes/sock");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock) < sizeof sa.sun_path) memcpy(sa.sun_path, sock, strlen(sock));
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(ls >= 0 && bind(ls, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(ls, 1) == 0);
    CHECKF(lib_write(sock, NULL, "to a socket", 11, &err) == 0, "socket: %s", err.msg);
    int c = accept(ls, NULL, NULL);
    char buf[32] = {0};
    CHECK(c >= 0 && read(c, buf, sizeof buf) == 11 && !memcmp(buf, "to a socket", 11));
    if (c >= 0) close(c);
    close(ls);
    CHECK(kind(sock) == S_IFSOCK && entries(at(dest, "pipes"), NULL, 0) == 2);
}

/* Injected ENOSPC: through write, pwrite and the GGUF writer the message
 * names it, the old file stays whole and no temporary file is left. */
static void test_injected_failures(void) {
    char d[512], p[512], names[256];
    q35_error err = {0};
    make_dir("inject");
    at(d, "inject");
    at(p, "inject/out");
    put_file(p, "old");
    static char data[65536];
    const q35_outfile_opts o = {.fail_errno = ENOSPC, .fail_at = 1000};
    int rc = lib_write(p, &o, data, 4096, &err);
    CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "No space left on device") && strstr(err.msg, p), "write: %s", err.msg);
    CHECKF(same_bytes(p, "old", 3) && entries(d, names, sizeof names) == 1, "after a failed write:%s", names);
    const q35_outfile_opts ps = {.seeks = 1, .fail_errno = ENOSPC, .fail_at = 2050};
    q35_outfile *f;
    CHECK(q35_outfile_open(&f, p, &ps, &err) == 0);
    CHECK(q35_outfile_pwrite(f, data, 100, 0, &err) == 0);
    rc = q35_outfile_pwrite(f, data, 100, 2000, &err);
    CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "No space left on device"), "pwrite: %s", err.msg);
    q35_outfile_abort(f);
    CHECKF(same_bytes(p, "old", 3) && entries(d, names, sizeof names) == 1, "after a failed pwrite:%s", names);
    /* the GGUF writer */
    q35_gguf_writer *wr;
    const int64_t ne[1] = {16384};
    CHECK(q35_gguf_writer_new(&wr, &err) == 0 && q35_gguf_writer_add_tensor(wr, "t", Q35_DTYPE_F32, 1, ne, data, &err) == 0);
    const q35_outfile_opts g = {.fail_errno = ENOSPC, .fail_at = 20000};
    rc = q35_gguf_writer_write_opts(wr, p, &g, &err);
    CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "No space left on device"), "gguf writer: %s", err.msg);
    CHECKF(same_bytes(p, "old", 3) && entries(d, names, sizeof names) == 1, "after a failed GGUF write:%s", names);
    CHECK(q35_gguf_writer_write(wr, p, &err) == 0 && !same_bytes(p, "old", 3) && entries(d, NULL, 0) == 1);
    q35_gguf_writer_free(wr);
    /* the space check: before anything is created, in units that show it */
    const q35_outfile_opts big = {.size = UINT64_MAX / 2};
    rc = lib_write(p, &big, "x", 1, &err);
    CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "needs 8.0 EiB of disk") && strstr(err.msg, "free there"), "space: %s",
           err.msg);
    CHECK(q35_outfile_check(p, &big, &err) == Q35_ERR_IO && entries(d, NULL, 0) == 1);
}

/* A 64 KiB tmpfs in a new user and mount namespace (no root needed where
 * the kernel allows it). In a child; returns 0 when it ran, -1 when such
 * a file system cannot be made here. */
static int small_fs_child(const char *dir) {
    const uid_t uid = getuid();
    const gid_t gid = getgid();
    if (uid != 0 ? unshare(CLONE_NEWUSER | CLONE_NEWNS) : unshare(CLONE_NEWNS)) return -1;
    if (uid != 0) { /* map ourselves to root in the new namespace */
        char map[64];
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        int fd = open("/proc/self/uid_map", O_WRONLY);
        if (fd < 0 || write(fd, map, strlen(map)) < 0) return -1;
        close(fd);
        if ((fd = open("/proc/self/setgroups", O_WRONLY)) >= 0) {
            if (write(fd, "deny", 4) < 0) return -1;
            close(fd);
        }
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        if ((fd = open("/proc/self/gid_map", O_WRONLY)) < 0 || write(fd, map, strlen(map)) < 0) return -1;
        close(fd);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) || mount("q35test", dir, "tmpfs", 0, "size=64k"))
        return -1;
    return 0;
}

static void test_small_fs(void) {
    char d[512];
    make_dir("smallfs");
    at(d, "smallfs");
    int pfd[2];
    if (pipe(pfd)) return;
    pid_t pid = fork();
    if (pid == 0) {
        alarm(60);
        close(pfd[0]);
        if (small_fs_child(d)) _exit(99);
        char p[600], msg[1200];
        q35_error err = {0};
        snprintf(p, sizeof p, "%s/out", d);
        put_file(p, "old");
        static char data[1 << 20];
        /* known size: refused before writing */
        const q35_outfile_opts o = {.size = sizeof data};
        int a = lib_write(p, &o, data, sizeof data, &err);
        snprintf(msg, sizeof msg, "%d|%s|", a, err.msg);
        /* unknown size: the real ENOSPC from write */
        int b = lib_write(p, NULL, data, sizeof data, &err);
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "%d|%s|%d|%d", b, err.msg, same_bytes(p, "old", 3),
                 entries(d, NULL, 0));
        if (write(pfd[1], msg, strlen(msg)) < 0) _exit(98);
        _exit(0);
    }
    close(pfd[1]);
    char buf[1300] = {0};
    ssize_t n = read(pfd[0], buf, sizeof buf - 1);
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 99) {
        printf("note: no small file system can be made here (unshare/mount tmpfs refused): disk full is shown by "
               "the injected failures and /dev/full\n");
        return;
    }
    CHECKF(n > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "small file system child: status %d", st);
    CHECKF(strstr(buf, "needs 1.0 MiB of disk, ") && strstr(buf, " KiB free there"), "known size on 64 KiB: %s", buf);
    CHECKF(strstr(buf, "cannot write: No space left on device|1|1"), "unknown size on 64 KiB: %s", buf);
}

/* Runs f as nobody when root (root writes into read-only folders), in a
 * child; returns f's result and err's message through a pipe. */
static int as_unprivileged(int (*f)(const char *, q35_error *), const char *path, q35_error *err) {
    int pfd[2];
    if (pipe(pfd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        alarm(60);
        if (geteuid() == 0 && (setgid(NOBODY) || setuid(NOBODY))) _exit(99);
        int rc = f(path, err);
        if (write(pfd[1], err->msg, strlen(err->msg)) < 0) _exit(98);
        _exit(rc);
    }
    close(pfd[1]);
    ssize_t n = read(pfd[0], err->msg, sizeof err->msg - 1);
    err->msg[n > 0 ? n : 0] = '\0';
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int write_x(const char *path, q35_error *err) { return lib_write(path, NULL, "x", 1, err); }

static void test_read_only_folder(void) {
    char d[512], p[512];
    q35_error err = {0};
    make_dir("ro");
    at(d, "ro");
    at(p, "ro/old");
    put_file(p, "old");
    chmod(d, 0555);
    chmod(tmpdir, 0755); /* nobody must reach it */
    int rc = as_unprivileged(write_x, p, &err);
    if (rc == 99) {
        SKIP("cannot run as an unprivileged user to test a read-only folder");
    } else {
        CHECKF(rc == Q35_ERR_IO && strstr(err.msg, "cannot write into folder") && strstr(err.msg, "Permission denied"),
               "read-only folder: rc %d, %s", rc, err.msg);
        CHECK(same_bytes(p, "old", 3) && entries(d, NULL, 0) == 1);
    }
    chmod(d, 0755);
}

static void test_scratch(void) {
    char p[512], s[512];
    q35_error err = {0};
    char *out = NULL;
    make_dir("scr");
    make_dir("scr/tmp");
    CHECK(q35_outfile_scratch(at(p, "scr/model.gguf"), NULL, "stage", &out, &err) == 0);
    CHECKF(out && strstr(out, "/scr/model.gguf.stage-") && kind(out) == S_IFREG, "scratch beside: %s", out);
    if (out) unlink(out);
    free(out);
    /* beside a link's target */
    CHECK(symlink("../lib/other/file", at(p, "scr/link")) == 0);
    CHECK(q35_outfile_scratch(p, NULL, "stage", &out, &err) == 0);
    CHECKF(out && strstr(out, "/lib/other/file.stage-"), "scratch beside a link's target: %s", out);
    if (out) unlink(out);
    free(out);
    /* a device: in dir */
    CHECK(q35_outfile_scratch(dev_null, at(s, "scr/tmp"), "stage", &out, &err) == 0);
    CHECKF(out && strstr(out, "/scr/tmp/q35-stage-"), "scratch for a device: %s", out);
    if (out) unlink(out);
    free(out);
}

/* ---- every writer of the q35 program ------------------------------------ */

typedef struct writer {
    const char *name;
    const char *args[20]; /* "OUT" stands for the output path */
    int seeks;            /* refuses devices and FIFOs */
    uint8_t *ref;         /* what it writes into a regular file */
    size_t ref_len;
} writer;

static char model[512], calib[512], scratch[512];

/* Starts q35 with w's arguments (OUT = out), stdout and stderr into
 * tmpdir's out and err; as nobody when asked and root. */
static pid_t spawn(const writer *w, const char *out, int unprivileged) {
    const char *argv[24];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; w->args[i]; i++) {
        const char *a = w->args[i];
        argv[n++] = !strcmp(a, "OUT") ? out : !strcmp(a, "MODEL") ? model : !strcmp(a, "CALIB") ? calib : a;
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        char o[512], e[512];
        int in = open("/dev/null", O_RDONLY), fo = open(at(o, "out"), O_WRONLY | O_CREAT | O_TRUNC, 0644),
            fe = open(at(e, "err"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || fo < 0 || fe < 0 || dup2(in, 0) < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(126);
        if (unprivileged && geteuid() == 0 && (setgid(NOBODY) || setuid(NOBODY))) _exit(99);
        alarm(600); /* kept across exec: a writer that hangs dies */
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* The result of a q35 that exited with status st. */
static result collect(int st) {
    result r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    char p[512];
    r.out = slurp(at(p, "out"));
    r.err = slurp(at(p, "err"));
    return r;
}

static result reap(pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    return collect(st);
}

static int one_line(const char *s) {
    size_t len = strlen(s);
    return len > 0 && s[len - 1] == '\n' && strchr(s, '\n') == s + len - 1;
}

/* stderr's last line (after a progress report, \r-separated too). */
static const char *last_line(const char *s) {
    const char *end = s + strlen(s), *p = end > s && end[-1] == '\n' ? end - 1 : end;
    while (p > s && p[-1] != '\n' && p[-1] != '\r') p--;
    return p;
}

/* A refusal before any work: status 1, one line naming `mention`. */
static void check_refused(const writer *w, const char *what, const result *r, const char *mention) {
    CHECKF(r->status == 1 && one_line(r->err) && strstr(r->err, mention), "%s, %s: status %d, stderr: %s (want '%s')",
           w->name, what, r->status, r->err, mention);
}

/* A failure after the work (its progress report before): status 1, the
 * last line naming `mention`. */
static void check_failed(const writer *w, const char *what, const result *r, const char *mention) {
    const char *last = last_line(r->err);
    CHECKF(r->status == 1 && one_line(last) && strstr(last, mention), "%s, %s: status %d, last line: %s (want '%s')",
           w->name, what, r->status, last, mention);
}

/* A fresh folder for one case: tmpdir/w-NAME-CASE. */
static char *case_dir(char *buf, const writer *w, const char *c) {
    char rel[128];
    snprintf(rel, sizeof rel, "w-%s-%s", w->name, c);
    for (char *p = rel; *p; p++)
        if (*p == ' ') *p = '_';
    make_dir(rel);
    return at(buf, rel);
}

/* The folder holds exactly n entries; once the writer is done (!running)
 * the scratch folder none. */
static void check_folder(const writer *w, const char *what, const char *dir, int n, int running) {
    char names[512];
    CHECKF(entries(dir, names, sizeof names) == n, "%s, %s: %s holds%s (want %d entries)", w->name, what, dir, names, n);
    CHECKF(running || entries(scratch, names, sizeof names) == 0, "%s, %s: stage files left:%s", w->name, what, names);
}
#define check_clean(w, what, dir, n) check_folder(w, what, dir, n, 0)

static void writer_reference(writer *w) {
    char d[512], out[600];
    case_dir(d, w, "file");
    snprintf(out, sizeof out, "%s/out", d);
    put_file(out, "old"); /* replaced */
    result r = reap(spawn(w, out, 0));
    CHECKF(r.status == 0, "%s into a file: %s", w->name, r.err);
    w->ref = load(out, &w->ref_len);
    CHECKF(w->ref_len > 64, "%s wrote %zu bytes", w->name, w->ref_len);
    check_clean(w, "file", d, 1);
    free_result(&r);
}

static void writer_fifo(const writer *w) {
    char d[512], fifo[600], dest[512];
    case_dir(d, w, "fifo");
    snprintf(fifo, sizeof fifo, "%s/out", d);
    at(dest, "fifo-dest");
    CHECK(mkfifo(fifo, 0644) == 0);
    /* a reader waiting */
    pid_t rd = fifo_reader(fifo, dest);
    result r = reap(spawn(w, fifo, 0));
    const int rs = end_reader(fifo, rd);
    if (w->seeks) {
        check_refused(w, "a FIFO", &r, "is a FIFO");
    } else {
        CHECKF(r.status == 0 && rs == 0, "%s into a FIFO with a reader: %d, %s", w->name, r.status, r.err);
        CHECKF(same_bytes(dest, w->ref, w->ref_len), "%s: the FIFO's reader did not get the file's bytes", w->name);
    }
    CHECK(kind(fifo) == S_IFIFO);
    check_clean(w, "FIFO with a reader", d, 1);
    free_result(&r);
    /* no reader for a second: the writer waits and nothing changes; then
     * a reader comes and gets the whole file */
    pid_t pid = spawn(w, fifo, 0);
    sleep(1);
    int st = 0;
    const pid_t done = waitpid(pid, &st, WNOHANG);
    CHECK(kind(fifo) == S_IFIFO);
    check_folder(w, "FIFO without a reader", d, 1, 1);
    if (w->seeks) { /* refused at once */
        r = done == pid ? collect(st) : reap(pid);
        check_refused(w, "a FIFO without a reader", &r, "is a FIFO");
    } else {
        CHECKF(done == 0, "%s: finished (status %d) with nobody reading its FIFO", w->name, st);
        if (done == pid) return;
        at(dest, "fifo-dest");
        rd = fifo_reader(fifo, dest);
        r = reap(pid);
        CHECKF(r.status == 0 && end_reader(fifo, rd) == 0, "%s into a FIFO, late reader: %s", w->name, r.err);
        CHECKF(same_bytes(dest, w->ref, w->ref_len), "%s: the late reader did not get the file's bytes", w->name);
    }
    CHECK(kind(fifo) == S_IFIFO);
    check_clean(w, "FIFO, late reader", d, 1);
    free_result(&r);
}

static void writer_links(const writer *w) {
    char d[512], link[600], file[600], to[64] = {0};
    /* a link to a file beside it */
    case_dir(d, w, "link");
    snprintf(link, sizeof link, "%s/link", d);
    snprintf(file, sizeof file, "%s/file", d);
    put_file(file, "old");
    CHECK(symlink("file", link) == 0);
    result r = reap(spawn(w, link, 0));
    CHECKF(r.status == 0 && kind(link) == S_IFLNK && same_bytes(file, w->ref, w->ref_len), "%s through a link: %s",
           w->name, r.err);
    check_clean(w, "link", d, 2);
    free_result(&r);
    /* a link into another folder */
    char d2[512];
    case_dir(d, w, "link-from");
    case_dir(d2, w, "link-to");
    snprintf(link, sizeof link, "%s/link", d);
    snprintf(file, sizeof file, "%s/file", d2);
    put_file(file, "old");
    CHECK(symlink(file, link) == 0);
    r = reap(spawn(w, link, 0));
    CHECKF(r.status == 0 && kind(link) == S_IFLNK && same_bytes(file, w->ref, w->ref_len), "%s through a link to another folder: %s",
           w->name, r.err);
    check_clean(w, "link from another folder", d, 1);
    check_clean(w, "link's target's folder", d2, 1);
    free_result(&r);
    /* a dangling link: refused; neither it nor its target changes */
    case_dir(d, w, "dangling");
    snprintf(link, sizeof link, "%s/link", d);
    CHECK(symlink("missing", link) == 0);
    r = reap(spawn(w, link, 0));
    check_refused(w, "a dangling link", &r, "does not exist");
    CHECK(kind(link) == S_IFLNK && readlink(link, to, sizeof to - 1) == 7);
    check_clean(w, "dangling link", d, 1);
    free_result(&r);
}

static void writer_refusals(const writer *w) {
    char d[512], p[600];
    /* a folder */
    case_dir(d, w, "folder");
    snprintf(p, sizeof p, "%s/sub", d);
    mkdir(p, 0755);
    result r = reap(spawn(w, p, 0));
    check_refused(w, "a folder", &r, "is a folder");
    CHECK(kind(p) == S_IFDIR && entries(p, NULL, 0) == 0);
    check_clean(w, "folder", d, 1);
    free_result(&r);
    /* a read-only folder holding the file */
    case_dir(d, w, "ro");
    snprintf(p, sizeof p, "%s/out", d);
    put_file(p, "old");
    chmod(d, 0555);
    r = reap(spawn(w, p, 1));
    if (r.status == 99) {
        SKIP("cannot run q35 as an unprivileged user to test a read-only folder");
    } else {
        check_refused(w, "a read-only folder", &r, "Permission denied");
        CHECK(same_bytes(p, "old", 3));
        check_clean(w, "read-only folder", d, 1);
    }
    chmod(d, 0755);
    free_result(&r);
}

static void writer_devices(const writer *w) {
    struct stat a, b;
    char msg[600];
    stat(dev_null, &a);
    result r = reap(spawn(w, dev_null, 0));
    if (w->seeks) check_refused(w, "/dev/null", &r, "is a character device");
    else CHECKF(r.status == 0, "%s into /dev/null: %s", w->name, r.err);
    CHECK(stat(dev_null, &b) == 0 && S_ISCHR(b.st_mode) && a.st_rdev == b.st_rdev);
    check_clean(w, "/dev/null", scratch, 0);
    free_result(&r);
    /* a device that is full: the real ENOSPC, named */
    r = reap(spawn(w, dev_full, 0));
    snprintf(msg, sizeof msg, "%s: cannot write: No space left on device", dev_full);
    if (w->seeks) check_refused(w, "/dev/full", &r, "is a character device");
    else check_failed(w, "/dev/full", &r, msg);
    CHECK(stat(dev_full, &b) == 0 && S_ISCHR(b.st_mode));
    check_clean(w, "/dev/full", scratch, 0);
    free_result(&r);
}

/* A 4 KiB tmpfs (unshare -rm): the space check refuses, in KiB, and
 * leaves it empty. Returns -1 when no such file system can be made. */
static int writer_small_fs(const writer *w) {
    char d[512], cmd[4096], p[512], lsf[512];
    case_dir(d, w, "smallfs");
    int n = snprintf(cmd, sizeof cmd, "unshare -rm sh -c 'mount -t tmpfs -o size=4k q35test %s || exit 99; %s", d, bin);
    for (int i = 0; w->args[i]; i++) {
        const char *a = w->args[i];
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s%s",
                      !strcmp(a, "OUT") ? d : !strcmp(a, "MODEL") ? model : !strcmp(a, "CALIB") ? calib : a,
                      !strcmp(a, "OUT") ? "/out" : "");
    }
    snprintf(cmd + n, sizeof cmd - (size_t)n, " >/dev/null 2>%s; rc=$?; ls -A %s >%s; exit $rc' 2>/dev/null",
             at(p, "err"), d, at(lsf, "ls"));
    int st = system(cmd);
    const int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc == 99) return -1;
    char *err = slurp(p), *ls = slurp(lsf);
    const char *last = last_line(err);
    CHECKF(rc == 1 && one_line(last) && strstr(last, "of disk, 4.0 KiB free there") && !strstr(last, "0.00"),
           "%s on a 4 KiB file system: status %d, %s", w->name, rc, err);
    CHECKF(!*ls, "%s left on the 4 KiB file system: %s", w->name, ls);
    free(err);
    free(ls);
    return 0;
}

static void test_writers(void) {
    shared_path(model, sizeof model, "models/stories260K/stories260K.bin");
    char full[512];
    shared_path(full, sizeof full, "data/tinystories-calib.txt");
    size_t len;
    char *text = (char *)load(full, &len);
    at(calib, "calib.txt");
    if (!text || len < 4000) {
        SKIP("no calibration text in ../shared/data");
        free(text);
        return;
    }
    text[3000] = '\0';
    put_file(calib, text);
    free(text);
    make_dir("scratch");
    at(scratch, "scratch");
    setenv("TMPDIR", scratch, 1); /* quantize --calib's stage files for a device or FIFO */
    writer ws[] = {
        {"convert", {"convert", "MODEL", "OUT", NULL}, 0, NULL, 0},
        {"quantize", {"quantize", "MODEL", "OUT", "--type", "Q3_5", "-t", "1", NULL}, 0, NULL, 0},
        {"quantize --calib", {"quantize", "MODEL", "OUT", "--type", "Q2_5", "--calib", "CALIB", "--calib-tokens", "64",
                              "--tune-epochs", "1", "-t", "1", NULL}, 0, NULL, 0},
        {"synth", {"synth", "--shape", "tiny", "OUT", NULL}, 0, NULL, 0},
        {"imatrix", {"imatrix", "-m", "MODEL", "-f", "CALIB", "--max-tokens", "64", "-t", "1", "-o", "OUT", NULL}, 0, NULL, 0},
        {"perplexity", {"perplexity", "-m", "MODEL", "-f", "CALIB", "--chunks", "2", "-t", "1", "--kl-divergence-base",
                        "OUT", NULL}, 1, NULL, 0},
    };
    int small_fs = 1;
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        writer *w = &ws[i];
        writer_reference(w);
        if (!w->ref) continue;
        writer_fifo(w);
        writer_links(w);
        writer_refusals(w);
        if (!devices_ok) SKIP("%s: no private device nodes", w->name);
        else writer_devices(w);
        if (small_fs && writer_small_fs(w) < 0) {
            small_fs = 0;
            printf("note: no small file system can be made here (unshare -rm refused): disk full is shown by "
                   "/dev/full and the injected failures\n");
        }
        free(w->ref);
    }
    if (!devices_ok) {
        SKIP("no private /dev/stdout");
        return;
    }
    /* the issue's own example: a model through a pipe */
    char cmd[4096], piped[512], rcf[512], e[512];
    snprintf(cmd, sizeof cmd, "%s convert %s %s 2>/dev/null | cat > %s", bin, model, dev_stdout, at(piped, "piped.gguf"));
    CHECK(system(cmd) == 0);
    size_t n1, n2;
    char ref[512];
    snprintf(ref, sizeof ref, "%s/w-convert-file/out", tmpdir);
    uint8_t *a = load(piped, &n1), *b = load(ref, &n2);
    CHECKF(n1 == n2 && n1 > 0 && !memcmp(a, b, n1), "convert into /dev/stdout | cat: %zu bytes, a file %zu", n1, n2);
    free(a);
    free(b);
    /* a reader that goes away: one line, EPIPE */
    snprintf(cmd, sizeof cmd, "(%s convert %s %s 2>%s; echo $? >%s) | head -c 100 >/dev/null", bin, model, dev_stdout,
             at(e, "err"), at(rcf, "rc"));
    CHECK(system(cmd) == 0);
    char *rc = slurp(rcf), *err = slurp(e);
    CHECKF(atoi(rc) == 1 && one_line(err) && strstr(err, "Broken pipe"), "a reader that goes away: %s, %s", rc, err);
    free(rc);
    free(err);
}

int main(void) {
    if (clirun_init("outfile")) {
        fprintf(stderr, "cannot make a temporary folder\n");
        return 1;
    }
    test_units();
    test_files_and_links();
    if ((devices_ok = private_devices() == 0)) test_devices();
    else SKIP("as root, cannot make private nodes of /dev/null and /dev/full (a regressed writer would replace the machine's)");
    test_fifo_and_socket();
    test_injected_failures();
    test_small_fs();
    test_read_only_folder();
    test_scratch();
    test_writers();
    clirun_cleanup();
    TEST_END();
}
