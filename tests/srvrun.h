/* srvrun.h — running `q35 serve` from a test: start it on a free
 * loopback port, talk HTTP to it over plain sockets (so a test can also
 * send what no client library would: stalls, garbage, dropped
 * connections), stop it with a signal. Include once per test program. */
#ifndef Q35_TEST_SRVRUN_H
#define Q35_TEST_SRVRUN_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

typedef struct server {
    pid_t pid;
    int port;
    char log[512]; /* its stderr */
} server;

static inline double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Starts PRE... serve --port 0 ARGS... (pre[0]: the program, found on
 * PATH: bin, or mpirun with its arguments and q35-mpi) with stderr into
 * dir/NAME.log; waits for its "listening on" line. Returns 0, or -1 (the
 * log says why). */
static inline int server_start_with(server *s, const char *const *pre, const char *dir, const char *name,
                                    const char *const *args) {
    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "%s/%s.log", dir, name);
    int out[2];
    if (pipe(out)) return -1;
    const char *argv[64];
    int n = 0;
    for (int i = 0; pre[i] && n < 40; i++) argv[n++] = pre[i];
    argv[n++] = "serve";
    argv[n++] = "--port";
    argv[n++] = "0";
    for (int i = 0; args[i] && n < 62; i++) argv[n++] = args[i];
    argv[n] = NULL;
    fflush(stdout); /* the child must not write this process's buffered lines again */
    s->pid = fork();
    if (s->pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(out[1], 1);
        dup2(fd, 2);
        close(out[0]);
        close(out[1]);
        close(fd);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    char line[256];
    size_t len = 0;
    const double t0 = srv_now();
    while (srv_now() - t0 < 120 && len < sizeof line - 1) {
        struct pollfd p = {out[0], POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        const ssize_t k = read(out[0], line + len, 1);
        if (k <= 0) break;
        len++;
        if (line[len - 1] == '\n') break;
    }
    close(out[0]);
    line[len] = '\0';
    const char *colon = strrchr(line, ':');
    if (!strstr(line, "listening on") || !colon) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
        return -1;
    }
    s->port = atoi(colon + 1);
    return 0;
}

/* Starts bin serve --port 0 ARGS... (server_start_with). */
static inline int server_start(server *s, const char *bin, const char *dir, const char *name, const char *const *args) {
    const char *pre[] = {bin, NULL};
    return server_start_with(s, pre, dir, name, args);
}

/* Sends sig and waits up to secs for the exit: its status (128 + signal
 * when killed), or -1 when it did not stop (then it is killed). */
static inline int server_stop(server *s, int sig, double secs) {
    if (s->pid <= 0) return -1;
    kill(s->pid, sig);
    const double t0 = srv_now();
    int st;
    for (;;) {
        const pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid) break;
        if (srv_now() - t0 > secs) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            s->pid = 0;
            return -1;
        }
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    s->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* ---- plain HTTP over a socket ------------------------------------------ */

static inline int tcp_connect(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static inline int send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        const ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads until the peer closes or ms pass; returns the bytes (malloc'ed,
 * NUL-terminated), *n their count, *closed whether the peer closed. */
static inline char *recv_all(int fd, int ms, size_t *n, int *closed) {
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    *closed = 0;
    const double end = srv_now() + ms / 1000.0;
    for (;;) {
        const double left = end - srv_now();
        if (left <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        if (len + 4096 > cap) b = realloc(b, cap *= 2);
        const ssize_t k = recv(fd, b + len, cap - len - 1, 0);
        if (k <= 0) {
            *closed = 1;
            break;
        }
        len += (size_t)k;
    }
    b[len] = '\0';
    *n = len;
    return b;
}

typedef struct reply {
    int status;    /* 0: no response */
    char *head;    /* status line and headers */
    char *body;    /* decoded (chunked transfer undone) */
    size_t n_body;
} reply;

static inline void reply_free(reply *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* A header's value in r->head (case-insensitive name), copied into buf. */
static inline const char *reply_header(const reply *r, const char *name, char *buf, size_t cap) {
    const size_t nl = strlen(name);
    for (const char *p = r->head ? strstr(r->head, "\r\n") : NULL; p && p[2]; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            while (*v == ' ') v++;
            size_t k = strcspn(v, "\r\n");
            k = k < cap - 1 ? k : cap - 1;
            memcpy(buf, v, k);
            buf[k] = '\0';
            return buf;
        }
    }
    return NULL;
}

/* Splits raw response bytes into r. */
static inline void parse_reply(const char *raw, size_t n, reply *r) {
    memset(r, 0, sizeof *r);
    const char *sep = strstr(raw, "\r\n\r\n");
    if (n < 12 || strncmp(raw, "HTTP/1.", 7) != 0 || !sep) return;
    r->status = atoi(raw + 9);
    r->head = strndup(raw, (size_t)(sep - raw) + 2);
    const char *p = sep + 4, *end = raw + n;
    char te[64];
    r->body = malloc((size_t)(end - p) + 1);
    if (reply_header(r, "Transfer-Encoding", te, sizeof te) && strstr(te, "chunked")) {
        while (p < end) {
            char *after;
            const unsigned long k = strtoul(p, &after, 16);
            const char *data = strstr(after, "\r\n");
            if (!data || k == 0 || data + 2 + k > end) break;
            memcpy(r->body + r->n_body, data + 2, k);
            r->n_body += k;
            p = data + 2 + k + 2;
        }
    } else {
        r->n_body = (size_t)(end - p);
        memcpy(r->body, p, r->n_body);
    }
    r->body[r->n_body] = '\0';
}

/* One request on a fresh connection (Connection: close): method, path, an
 * API key (NULL: none) and a body (NULL: none). */
static inline int http_req(int port, const char *method, const char *path, const char *key, const char *body,
                           reply *r) {
    memset(r, 0, sizeof *r);
    const int fd = tcp_connect(port);
    if (fd < 0) return -1;
    const size_t blen = body ? strlen(body) : 0;
    char *req = malloc(blen + 1024);
    int k = sprintf(req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method, path);
    if (key) k += sprintf(req + k, "Authorization: Bearer %s\r\n", key);
    if (body) k += sprintf(req + k, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    k += sprintf(req + k, "\r\n");
    if (body) memcpy(req + k, body, blen);
    send_all(fd, req, (size_t)k + blen); /* a server may answer (413, 401) before it reads everything */
    free(req);
    size_t n;
    int closed;
    char *raw = recv_all(fd, 120000, &n, &closed);
    close(fd);
    parse_reply(raw, n, r);
    free(raw);
    return r->status ? 0 : -1;
}

/* The value of a metric in GET /metrics (-1 when absent); key: the API key or NULL. */
static inline double server_metric(int port, const char *key, const char *name) {
    reply r;
    double v = -1;
    if (http_req(port, "GET", "/metrics", key, NULL, &r) == 0 && r.body) {
        char pat[96];
        snprintf(pat, sizeof pat, "\n%s ", name);
        const char *p = strstr(r.body, pat);
        if (p) v = atof(p + strlen(pat));
    }
    reply_free(&r);
    return v;
}

#endif
