#define _DEFAULT_SOURCE /* madvise */
#include "core/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

int q35_mapfile_open(q35_mapfile *mf, const char *path, q35_error *err) {
    mf->data = NULL;
    mf->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return q35_fail(err, Q35_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return q35_fail(err, Q35_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return q35_fail(err, Q35_ERR_IO, "%s: cannot map: %s", path,
                            strerror(errno));
        }
        mf->data = p;
        mf->size = (uint64_t)st.st_size;
    }
    close(fd);
    return Q35_OK;
}

void q35_mapfile_close(q35_mapfile *mf) {
    if (mf->data) munmap((void *)mf->data, (size_t)mf->size);
    mf->data = NULL;
    mf->size = 0;
}

#define HUGE_ALIGN ((uint64_t)2 << 20)

static size_t huge_round(uint64_t size) { return (size_t)((size + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN); }

void *q35_huge_alloc(uint64_t size) {
    if (size == 0 || size > SIZE_MAX - 2 * HUGE_ALIGN) return NULL;
    /* map one alignment more, then give back the unaligned head and the tail */
    const size_t len = huge_round(size);
    uint8_t *p = mmap(NULL, len + HUGE_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    const size_t head = (size_t)((HUGE_ALIGN - (uintptr_t)p % HUGE_ALIGN) % HUGE_ALIGN);
    if (head) munmap(p, head);
    munmap(p + head + len, HUGE_ALIGN - head);
    p += head;
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); /* advice only: without it the pages are ordinary ones */
#endif
    return p;
}

void q35_huge_free(void *p, uint64_t size) {
    if (p) munmap(p, huge_round(size));
}

int q35_read_file(const char *path, char **data, size_t *size, q35_error *err) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return q35_fail(err, Q35_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            fclose(f);
            return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return q35_fail(err, Q35_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return Q35_OK;
}

void q35_mapfile_release(const void *p, uint64_t n) {
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || n == 0) return;
    const uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    const uintptr_t e = ((uintptr_t)p + (uintptr_t)n) / (uintptr_t)page * (uintptr_t)page;
    if (e > a) madvise((void *)a, (size_t)(e - a), MADV_DONTNEED); /* advice only: a failure changes nothing */
}
