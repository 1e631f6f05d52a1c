/* meminfo.h — how much memory this process may still fill: for the check
 * before a model is loaded (model/model.c), so that a model that does not
 * fit fails with one line instead of being killed by the kernel's
 * out-of-memory killer half way through loading. */
#ifndef Q35_CORE_MEMINFO_H
#define Q35_CORE_MEMINFO_H

#include <stdint.h>

/* Bytes available, and in *source where the figure came from ("MemAvailable",
 * "cgroup limit", "as set"). setting: q35_model_params.mem_available (0:
 * measure; > 0: that many bytes; < 0: no check). Returns:
 *   0 and *bytes: the figure;
 *   1: no check wanted (setting < 0) or nothing could be read.
 * The figure is the smaller of /proc/meminfo's MemAvailable (free memory
 * plus page cache and slab the kernel can reclaim; swap is not counted) and
 * the room left under this process's cgroup memory limit (v1 or v2), if
 * any. */
int q35_mem_available(int64_t setting, uint64_t *bytes, const char **source);

#endif
