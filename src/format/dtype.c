#include "format/dtype.h"

#include <stddef.h>

static const q35_dtype_info dtype_table[Q35_DTYPE_COUNT_] = {
    [Q35_DTYPE_F32] = {"F32", 1, 4},
};

const q35_dtype_info *q35_dtype_get(int id) {
    if (id < 0 || id >= Q35_DTYPE_COUNT_ || !dtype_table[id].name) return NULL;
    return &dtype_table[id];
}
