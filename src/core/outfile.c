#define _XOPEN_SOURCE 700 /* realpath */
/* outfile.c — q35_outfile (q35.h, "output files"): what is at the path
 * decides how it is written. Nothing or a regular file: a temporary file
 * beside it, renamed over it; a symbolic link: the same for its target;
 * a device, FIFO or socket: written into; a folder: refused. */
#include "core/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/checked.h"
#include "core/error.h"

struct q35_outfile {
    int fd;
    int stream;        /* a device, FIFO or socket: written into, never renamed */
    int sync;          /* fsync before closing (files, block devices) */
    char *name;        /* for messages: the path, or "LINK -> TARGET" */
    char *file;        /* !stream: the file replaced (a link's target, resolved) */
    char *folder;      /* !stream: its folder */
    char *tmp;         /* !stream: the temporary file beside it */
    mode_t mode;       /* !stream: the permission bits it gets */
    uint64_t pos;      /* bytes q35_outfile_write has written */
    q35_outfile_opts o;
};

void q35_bytes_text(uint64_t n, char *buf, size_t cap) {
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024) {
        snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
        return;
    }
    double v = (double)n;
    int u = -1;
    while (v >= 1024.0 && u < 5) v /= 1024.0, u++;
    snprintf(buf, cap, "%.1f %s", v, unit[u]);
}

/* ---- what is at the path ------------------------------------------------ */

typedef struct target {
    int stream, sock, sync;
    char *file, *folder, *name; /* as in q35_outfile */
    mode_t mode;
} target;

static void target_free(target *t) {
    free(t->file);
    free(t->folder);
    free(t->name);
}

static const char *kind_of(mode_t m) {
    return S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" : S_ISFIFO(m) ? "a FIFO"
         : S_ISSOCK(m) ? "a socket" : S_ISDIR(m) ? "a folder" : "a special file";
}

/* The folder path is in: everything before its last '/'. */
static char *folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
}

/* Fills t for path, or fails with the one line open would. */
static int classify(const char *path, const q35_outfile_opts *o, target *t, q35_error *err) {
    memset(t, 0, sizeof *t);
    if (!path || !*path) return q35_fail(err, Q35_ERR_ARG, "empty output path");
    struct stat st;
    int linked = 0;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            return q35_fail(err, Q35_ERR_IO, "%s: cannot look at it: %s", path, strerror(errno));
        st.st_mode = S_IFREG | 0644; /* a new file (a missing folder fails below) */
        if (!(t->file = strdup(path))) goto oom;
    } else if (S_ISLNK(st.st_mode)) {
        linked = 1;
        if (stat(path, &st) != 0) {
            const int e = errno;
            if (e != ENOENT) return q35_fail(err, Q35_ERR_IO, "%s: cannot follow the symbolic link: %s", path, strerror(e));
            char to[512];
            ssize_t n = readlink(path, to, sizeof to - 1);
            to[n > 0 ? n : 0] = '\0';
            return q35_fail(err, Q35_ERR_IO,
                            "%s: is a symbolic link to %s, which does not exist (like cp, q35 does not write through a dangling link)", path, to);
        }
    }
    if (S_ISDIR(st.st_mode)) return q35_fail(err, Q35_ERR_IO, "%s: is a folder", path);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
        if (o->seeks)
            return q35_fail(err, Q35_ERR_IO, "%s: is %s: this file is written out of order and needs a regular file",
                            path, kind_of(st.st_mode));
        if (access(path, W_OK) != 0)
            return q35_fail(err, Q35_ERR_IO, "%s: cannot write into %s: %s", path, kind_of(st.st_mode), strerror(errno));
        t->stream = 1;
        t->sock = S_ISSOCK(st.st_mode);
        t->sync = S_ISBLK(st.st_mode);
        if (!(t->name = strdup(path))) goto oom;
        return Q35_OK;
    }
    if (!S_ISREG(st.st_mode)) return q35_fail(err, Q35_ERR_IO, "%s: is %s", path, kind_of(st.st_mode));
    t->mode = st.st_mode & 0777;
    t->sync = 1;
    if (linked) { /* the file the link ends at, checked to be the one stat saw */
        struct stat rs;
        if (!(t->file = realpath(path, NULL)) || stat(t->file, &rs) != 0 || rs.st_dev != st.st_dev ||
            rs.st_ino != st.st_ino) {
            const int e = t->file ? errno : ENOENT;
            target_free(t);
            return q35_fail(err, Q35_ERR_IO, "%s: cannot resolve the symbolic link to its file: %s", path, strerror(e));
        }
        const size_t len = strlen(path) + strlen(t->file) + 5;
        if ((t->name = malloc(len))) snprintf(t->name, len, "%s -> %s", path, t->file);
    } else if (!t->file && !(t->file = strdup(path))) {
        goto oom;
    }
    if (!t->name && !(t->name = strdup(path))) goto oom;
    if (!(t->folder = folder_of(t->file))) goto oom;
    if (access(t->folder, W_OK) != 0) {
        const int e = errno;
        const int rc = q35_fail(err, Q35_ERR_IO, "%s: cannot write into folder %s: %s", t->name, t->folder, strerror(e));
        target_free(t);
        return rc;
    }
    return Q35_OK;
oom:
    target_free(t);
    return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
}

/* The whole new file must fit beside the one it replaces (freed only by
 * the rename). Nothing to check for a stream, or an unknown size. */
static int check_space(const target *t, uint64_t size, q35_error *err) {
    struct statvfs sv;
    uint64_t avail;
    if (t->stream || !size || statvfs(t->folder, &sv) != 0 ||
        q35_mul_u64((uint64_t)sv.f_bavail, (uint64_t)sv.f_frsize, &avail) || size <= avail)
        return Q35_OK;
    char need[32], have[32];
    q35_bytes_text(size, need, sizeof need);
    q35_bytes_text(avail, have, sizeof have);
    return q35_fail(err, Q35_ERR_IO, "%s: needs %s of disk, %s free there", t->name, need, have);
}

int q35_outfile_check(const char *path, const q35_outfile_opts *opts, q35_error *err) {
    const q35_outfile_opts o = opts ? *opts : (q35_outfile_opts){0};
    target t;
    int rc = classify(path, &o, &t, err);
    if (rc) return rc;
    rc = check_space(&t, o.size, err);
    target_free(&t);
    return rc;
}

/* ---- opening, writing, finishing ---------------------------------------- */

/* A socket: this process's stdout or stderr when it is that one (a socket
 * cannot be opened by name: /dev/stdout of a program whose output goes to
 * a socket), else a connection to the Unix socket at path. */
static int connect_socket(const char *path) {
    struct stat a, b;
    for (int fd = 1; fd <= 2; fd++)
        if (stat(path, &a) == 0 && fstat(fd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            return dup(fd);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path));
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (const struct sockaddr *)&sa, sizeof sa) != 0) {
        const int e = errno;
        close(fd);
        errno = e;
        fd = -1;
    }
    return fd;
}

int q35_outfile_open(q35_outfile **out, const char *path, const q35_outfile_opts *opts, q35_error *err) {
    *out = NULL;
    const q35_outfile_opts o = opts ? *opts : (q35_outfile_opts){0};
    target t;
    int rc = classify(path, &o, &t, err);
    if (rc) return rc;
    q35_outfile *f = NULL;
    if ((rc = check_space(&t, o.size, err))) goto fail;
    if (!(f = calloc(1, sizeof *f))) {
        rc = q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", t.name);
        goto fail;
    }
    *f = (q35_outfile){.fd = -1, .stream = t.stream, .sync = t.sync, .name = t.name, .file = t.file,
                       .folder = t.folder, .mode = t.mode, .o = o};
    const int sock = t.sock;
    t = (target){0}; /* f owns the strings */
    if (f->stream) {
        f->fd = sock ? connect_socket(path) : open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
        if (f->fd < 0) {
            rc = q35_fail(err, Q35_ERR_IO, "%s: cannot open it: %s", f->name, strerror(errno));
            goto fail;
        }
    } else {
        const size_t len = strlen(f->file) + sizeof ".tmp-XXXXXX";
        if (!(f->tmp = malloc(len))) {
            rc = q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", f->name);
            goto fail;
        }
        snprintf(f->tmp, len, "%s.tmp-XXXXXX", f->file);
        if ((f->fd = mkstemp(f->tmp)) < 0) {
            free(f->tmp);
            f->tmp = NULL; /* nothing to remove */
            rc = q35_fail(err, Q35_ERR_IO, "%s: cannot create a temporary file in %s: %s", f->name, f->folder,
                          strerror(errno));
            goto fail;
        }
    }
    *out = f;
    return Q35_OK;
fail:
    target_free(&t);
    q35_outfile_abort(f);
    return rc;
}

/* Writes all n bytes (at off when at >= 0); returns 0 or the errno. */
static int write_fd(int fd, const uint8_t *p, uint64_t n, int64_t at) {
    while (n > 0) {
        const size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        const ssize_t w = at >= 0 ? pwrite(fd, p, chunk, (off_t)at) : write(fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno;
        if (w == 0) return EIO;
        p += w;
        n -= (uint64_t)w;
        if (at >= 0) at += w;
    }
    return 0;
}

/* [off, off + n) written, or up to the test hook's limit and its errno. */
static int put(q35_outfile *f, const void *p, uint64_t n, uint64_t off, int seek, q35_error *err) {
    uint64_t end, allowed = n;
    if (q35_add_u64(off, n, &end) || end > (uint64_t)INT64_MAX)
        return q35_fail(err, Q35_ERR_ARG, "%s: writing past 2^63 bytes", f->name);
    const int inject = f->o.fail_errno != 0 && end > f->o.fail_at;
    if (inject) allowed = off < f->o.fail_at ? f->o.fail_at - off : 0;
    int e = write_fd(f->fd, p, allowed, seek ? (int64_t)off : -1);
    if (!e && inject) e = f->o.fail_errno;
    if (e) return q35_fail(err, Q35_ERR_IO, "%s: cannot write: %s", f->name, strerror(e));
    return Q35_OK;
}

int q35_outfile_write(q35_outfile *f, const void *p, uint64_t n, q35_error *err) {
    const int rc = put(f, p, n, f->pos, 0, err);
    if (!rc) f->pos += n;
    return rc;
}

int q35_outfile_pwrite(q35_outfile *f, const void *p, uint64_t n, uint64_t off, q35_error *err) {
    if (f->stream) return q35_fail(err, Q35_ERR_ARG, "%s: a stream cannot be written out of order", f->name);
    return put(f, p, n, off, 1, err);
}

/* Makes the rename durable; best effort (not every file system allows it). */
static void sync_folder(const char *dir) {
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int q35_outfile_commit(q35_outfile *f, q35_error *err) {
    const char *step = NULL;
    int e = 0;
    if (!f->stream && fchmod(f->fd, f->mode) != 0) step = "cannot set permissions", e = errno;
    else if (f->sync && fsync(f->fd) != 0) step = "cannot sync", e = errno;
    if (close(f->fd) != 0 && !step) step = "cannot close", e = errno;
    f->fd = -1;
    if (!step && !f->stream && rename(f->tmp, f->file) != 0)
        step = "cannot rename the temporary file over it", e = errno;
    if (step) {
        const int rc = q35_fail(err, Q35_ERR_IO, "%s: %s: %s", f->name, step, strerror(e));
        q35_outfile_abort(f);
        return rc;
    }
    if (!f->stream) sync_folder(f->folder);
    free(f->tmp); /* renamed: nothing to remove */
    f->tmp = NULL;
    q35_outfile_abort(f);
    return Q35_OK;
}

void q35_outfile_abort(q35_outfile *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (f->tmp) unlink(f->tmp);
    free(f->tmp);
    free(f->name);
    free(f->file);
    free(f->folder);
    free(f);
}

/* ---- intermediate files ------------------------------------------------- */

int q35_outfile_scratch(const char *path, const char *dir, const char *name, char **out, q35_error *err) {
    *out = NULL;
    const q35_outfile_opts o = {0};
    target t;
    int rc = classify(path, &o, &t, err);
    if (rc) return rc;
    const char *base = t.stream ? (dir && *dir ? dir : "/tmp") : t.file;
    const size_t len = strlen(base) + strlen(name) + sizeof "/q35--XXXXXX";
    char *s = malloc(len);
    if (!s) {
        target_free(&t);
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(s, len, t.stream ? "%s/q35-%s-XXXXXX" : "%s.%s-XXXXXX", base, name);
    const int fd = mkstemp(s);
    if (fd < 0) {
        rc = q35_fail(err, Q35_ERR_IO, "%s: cannot create an intermediate file %s: %s", path, s, strerror(errno));
        free(s);
    } else {
        close(fd);
        *out = s;
    }
    target_free(&t);
    return rc;
}
