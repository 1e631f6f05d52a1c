/* error.h — filling a q35_error. */
#ifndef Q35_CORE_ERROR_H
#define Q35_CORE_ERROR_H

#include "q35.h"

/* Sets err (may be NULL) to code and a printf-formatted one-line message;
 * returns code so callers can write `return q35_fail(err, ...)`. */
int q35_fail(q35_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* At a public entry point, where err may be NULL: points err at a local
 * q35_error then, so the code below may read err->code and err->msg. */
#define Q35_ERR_OR_LOCAL(err)      \
    q35_error q35_err_local_;      \
    if (!(err)) (err) = &q35_err_local_

#endif
