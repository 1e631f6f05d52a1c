#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

int q35_fail(q35_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        for (char *p = err->msg; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' '; /* keep it one line */
        err->code = code;
    }
    return code;
}
