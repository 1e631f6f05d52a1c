/* meminfo.h — how much memory this process may still fill: for the check
 * before a model is loaded (model/model.c), so that a model that does not
 * fit fails with one line instead of being killed by the kernel's
 * out-of-memory killer half way through loading. */
#ifndef Q35_CORE_MEMINFO_H
#define Q35_CORE_MEMINFO_H

#include <stdint.h>

/* Bytes available, and in *source where the figure came from ("MemAvailable",
 * "cgroup limit", "Q35_MEM_AVAILABLE"). Returns:
 *   0 and *bytes: the figure;
 *   1: no check wanted (Q35_MEM_AVAILABLE=off) or nothing could be read;
 *  -1: Q35_MEM_AVAILABLE holds something that is not a size.
 * The figure is the smaller of /proc/meminfo's MemAvailable (free memory
 * plus page cache and slab the kernel can reclaim; swap is not counted) and
 * the room left under this process's cgroup memory limit (v1 or v2), if
 * any. Q35_MEM_AVAILABLE=SIZE (bytes, or with a K/M/G/T suffix, powers of
 * 1024) replaces the measurement (tests, or a machine whose figures lie). */
int q35_mem_available(uint64_t *bytes, const char **source);

#endif
