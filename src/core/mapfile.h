/* mapfile.h — a whole file mapped read-only into memory. */
#ifndef Q35_CORE_MAPFILE_H
#define Q35_CORE_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"

typedef struct q35_mapfile {
    const uint8_t *data; /* size bytes; NULL when size is 0 */
    uint64_t size;
} q35_mapfile;

/* Maps path read-only. An empty file maps to data NULL, size 0. */
int q35_mapfile_open(q35_mapfile *mf, const char *path, q35_error *err);
void q35_mapfile_close(q35_mapfile *mf);

/* Drops the whole pages inside [p, p + n) of a file mapping from this
 * process's memory (madvise MADV_DONTNEED): they stay valid and are read
 * again from the file if touched. Only for read-only file mappings. */
void q35_mapfile_release(const void *p, uint64_t n);

/* Anonymous zeroed memory for a large array that is streamed at every
 * token (the R16 weights): 2 MiB aligned and marked for transparent huge
 * pages (madvise MADV_HUGEPAGE; where the kernel gives none, ordinary
 * pages), so reading it takes one TLB entry per 2 MiB instead of one per
 * 4 KiB. Pages become resident when first written. NULL when out of
 * memory or size is 0. Free with q35_huge_free and the same size. */
void *q35_huge_alloc(uint64_t size);
void q35_huge_free(void *p, uint64_t size);

/* Reads a whole file into a malloc'ed buffer with a NUL byte after its
 * end (*size excludes it). */
int q35_read_file(const char *path, char **data, size_t *size, q35_error *err);

#endif
