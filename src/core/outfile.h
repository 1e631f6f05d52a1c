/* outfile.h — writing a file whatever sits at its path: the q35_outfile
 * functions of q35.h ("output files": atomic replacement of files and of
 * symbolic links' targets, streaming into devices, FIFOs and sockets,
 * refusal of folders), and what the library's writers need besides. */
#ifndef Q35_CORE_OUTFILE_H
#define Q35_CORE_OUTFILE_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"

/* Creates an empty file with a fresh name for a writer's intermediate file
 * (calibration stages): beside path's file, "FILE.NAME-XXXXXX" (a link's
 * target when path is a symbolic link: the same file system as the
 * output), or, when path is a device, FIFO or socket, which have no folder
 * of their own to use, "DIR/q35-NAME-XXXXXX" (dir NULL: /tmp). *out is
 * malloc'ed: remove the file and free it when done. */
int q35_outfile_scratch(const char *path, const char *dir, const char *name, char **out,
                        q35_error *err);

#endif
