/* cli.h — helpers shared by the q35 subcommands: strict flag values, the
 * default-model lookup, one-line errors. Programs over the public API. */
#ifndef Q35_CLI_CLI_H
#define Q35_CLI_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"

/* Each subcommand: returns the process exit status. */
int cmd_run(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Prints "q35 CMD: message" as one line on stderr; returns 1 (exit status). */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict numbers: the whole string must parse and lie in [lo, hi].
 * On failure they print an error naming the flag and return -1. */
int cli_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out);
int cli_float(const char *cmd, const char *flag, const char *s, double lo, double hi,
              double *out);
int cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out);

/* argv[*i] is flag; returns its value (advancing *i) or NULL after printing
 * "FLAG needs a value". */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);

/* The default model: stories260K/stories260K.bin under $Q35_MODELS,
 * ./models, ../shared/models, in that order. Writes the path found into
 * out and returns 0, or returns -1. */
int cli_default_model(char *out, size_t cap);

/* A document of a text file: documents are separated by blank lines. */
typedef struct cli_doc {
    const char *text;
    size_t len;
} cli_doc;

/* Reads a whole file (error printed, -1 on failure). */
int cli_read_text(const char *cmd, const char *path, char **text, size_t *len);
/* Splits text into documents (*docs malloc'ed); returns their count, or
 * -1 after printing an error (none found, out of memory). */
int cli_split_docs(const char *cmd, const char *path, const char *text, size_t len, cli_doc **docs);
int cli_split_docs_raw(const char *text, size_t len, cli_doc **docs);

/* Checks before long work that path's folder exists and is writable and
 * path is no folder; prints an error and returns -1 otherwise. */
int cli_check_output(const char *cmd, const char *path);

/* Takes a positional argument a into *first, else *second; a third is an
 * error (printed, returns -1). */
int cli_positional(const char *cmd, const char *a, const char **first, const char **second);

/* The library reads no environment: these map the variables the program
 * honours onto its settings. Q35_KERNELS (a kernel set, "scalar" forces
 * the references), Q35_R16 ("0" keeps the rows), Q35_MEM_AVAILABLE (a
 * size such as 16G, or "off") for models; Q35_CUDA_GRAPH, Q35_CUDA_PDL,
 * Q35_CUDA_GEMV, Q35_CUDA_MAX_BYTES for sessions. A malformed value is
 * printed as an error (returns -1). */
int cli_model_params(const char *cmd, q35_model_params *p);
int cli_session_params(const char *cmd, q35_session_params *p);
/* Loads a model with cli_model_params, the tokenizer (may be NULL) and
 * flags; prints the error (with how to skip the memory check where that
 * refused it) and returns -1 on failure. */
int cli_load_model(const char *cmd, const char *path, const char *tokenizer, unsigned flags,
                   q35_model **m);

/* The number of online cores (at least 1): the --threads default. */
int cli_cores(void);

/* Seconds on a monotonic clock. */
double cli_now(void);

#endif
