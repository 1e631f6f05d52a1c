/* meminfo.c — memory this process may still fill (meminfo.h). */
#include "core/meminfo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q35.h"

int q35_parse_size(const char *s, uint64_t *out) {
    char *end;
    const double v = strtod(s, &end);
    if (end == s || !(v >= 0)) return -1;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0, end++; break;
    case 'm': case 'M': mul = 1048576.0, end++; break;
    case 'g': case 'G': mul = 1073741824.0, end++; break;
    case 't': case 'T': mul = 1099511627776.0, end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'I') end++;
    if (*end == 'b' || *end == 'B') end++;
    if (*end || v * mul >= 1.8e19) return -1;
    *out = (uint64_t)(v * mul);
    return 0;
}

/* The number after "key" at the start of a line of path (a /proc/meminfo
 * or memory.stat style file), times unit; 0 on success. */
static int read_key(const char *path, const char *key, uint64_t unit, uint64_t *out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    const size_t kl = strlen(key);
    int rc = -1;
    while (rc && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) != 0 || (line[kl] != ' ' && line[kl] != ':')) continue;
        const char *p = line + kl + (line[kl] == ':');
        unsigned long long v;
        if (sscanf(p, "%llu", &v) == 1) {
            *out = (uint64_t)v * unit;
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

/* A file holding one number ("max" = none: fails). */
static int read_number(const char *path, uint64_t *out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    unsigned long long v;
    const int ok = fscanf(f, "%llu", &v) == 1;
    fclose(f);
    if (!ok) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Room left under this process's cgroup memory limit: limit - usage +
 * reclaimable file cache. 0 on success; -1 when there is no limit or it
 * cannot be read. */
static int cgroup_room(uint64_t *out) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return -1;
    char line[1024], dir[1400];
    int rc = -1;
    while (rc && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        const char *controllers = c1 + 1, *path = c2 + 1;
        uint64_t limit, usage, cache = 0;
        char file[1500];
        if (!*controllers) { /* v2 */
            FILE *probe = fopen("/sys/fs/cgroup/cgroup.controllers", "r");
            snprintf(dir, sizeof dir, "%s%s", probe ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified", path);
            if (probe) fclose(probe);
            snprintf(file, sizeof file, "%s/memory.max", dir);
            if (read_number(file, &limit)) continue;
            snprintf(file, sizeof file, "%s/memory.current", dir);
            if (read_number(file, &usage)) continue;
            snprintf(file, sizeof file, "%s/memory.stat", dir);
            (void)read_key(file, "inactive_file", 1, &cache);
        } else {
            int has_memory = 0;
            for (const char *p = controllers; *p;) {
                const size_t n = strcspn(p, ",");
                has_memory |= n == 6 && strncmp(p, "memory", 6) == 0;
                p += n + (p[n] == ',');
            }
            if (!has_memory) continue;
            snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory%s", path);
            snprintf(file, sizeof file, "%s/memory.limit_in_bytes", dir);
            if (read_number(file, &limit)) continue;
            snprintf(file, sizeof file, "%s/memory.usage_in_bytes", dir);
            if (read_number(file, &usage)) continue;
            snprintf(file, sizeof file, "%s/memory.stat", dir);
            (void)read_key(file, "total_inactive_file", 1, &cache);
        }
        if (limit >= ((uint64_t)1 << 60)) continue; /* "no limit" */
        *out = (usage > limit ? 0 : limit - usage) + cache;
        rc = 0;
    }
    fclose(f);
    return rc;
}

int q35_mem_available(int64_t setting, uint64_t *bytes, const char **source) {
    if (setting < 0) return 1;
    if (setting > 0) {
        *bytes = (uint64_t)setting;
        if (source) *source = "as set";
        return 0;
    }
    uint64_t avail, room;
    const int have = read_key("/proc/meminfo", "MemAvailable", 1024, &avail) == 0;
    const int have_cg = cgroup_room(&room) == 0;
    if (!have && !have_cg) return 1;
    if (have_cg && (!have || room < avail)) {
        *bytes = room;
        if (source) *source = "cgroup limit";
    } else {
        *bytes = avail;
        if (source) *source = "MemAvailable";
    }
    return 0;
}
