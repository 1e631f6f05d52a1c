/* cli.h — helpers shared by the q35 subcommands: strict flag values, the
 * default-model lookup, one-line errors. Programs over the public API. */
#ifndef Q35_CLI_CLI_H
#define Q35_CLI_CLI_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "cli/engine.h"
#include "q35.h"

/* Each subcommand: returns the process exit status. Those that evaluate
 * take the MPI job (q35-mpi) or NULL (q35): engine.h. */
int cmd_run(cli_job *job, int argc, char **argv);
int cmd_perplexity(cli_job *job, int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(cli_job *job, int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(cli_job *job, int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

/* The chat template for a command: name_or_file (--chat-template) if given,
 * else the one tok_path (a model or tokenizer; may be NULL) carries; BOS/EOS
 * strings from tok_path where it has them. Error printed, 1 on failure. */
int cli_chat_template(const char *cmd, const char *tok_path, const char *name_or_file,
                      q35_chat_template **out);

/* The flags of the commands that generate (run, chat), as llama-cli's. */
typedef struct cli_gen {
    const char *model_path, *tok_path, *kv_type, *chat_template, *convert_type;
    long n_predict, threads, top_k, last_n, ngl, batch, ctx_size;
    double temp, top_p, min_p, penalty;
    uint64_t seed;
    int have_seed;
    char found[4096]; /* the default model's path */
} cli_gen;

#define CLI_GEN_USAGE \
    "  -m, --model FILE        model (default: stories260K, see README)\n" \
    "      --tokenizer PATH    tokenizer: a llama2.c .bin, tokenizer.json, a Hugging Face folder or\n" \
    "                          a GGUF (default: the model file's own, else tok<vocab>.bin or\n" \
    "                          tokenizer.bin beside the model)\n" \
    "  -n, --n-predict N       tokens to generate, -1 = until the context is full (default 256)\n" \
    "      --temp T            temperature, 0 = greedy (default 0.8)\n" \
    "      --top-k K           0 = off (default 40)\n" \
    "      --top-p P           1 = off (default 0.95)\n" \
    "      --min-p P           0 = off (default 0.05)\n" \
    "      --repeat-penalty R  1 = off (default 1.0)\n" \
    "      --repeat-last-n N   tokens the penalty looks back over (default 64)\n" \
    "  -s, --seed S            random seed (default: from the clock; printed)\n" \
    "  -t, --threads N         threads (default: number of cores)\n" \
    "  -b, --batch-size N      prompt tokens evaluated together (default 128)\n" \
    "  -c, --ctx-size N        context of the session (default: the model's, at most 4096)\n" \
    "      --kv-type T         KV cache: f16, f32, q8 (int8, a scale per row) or auto\n" \
    "                          (default: f16 for Q3_5-family models, f32 for fp32 ones)\n" \
    CLI_CONVERT_HELP \
    "      --gpu               run the whole model on the GPU (a `make cuda` build)\n" \
    "  -ngl, --n-gpu-layers N  put the first N layers on the GPU, the rest on the CPU\n" \
    "                          (N >= the layer count: all, as --gpu)\n" \
    "      --chat-template NAME|FILE  the chat template instead of the model's own\n"

void cli_gen_defaults(cli_gen *g);
/* argv[*i] when it is one of these flags: 1 (value taken, *i advanced), 0
 * when it is not one, -1 after printing an error. */
int cli_gen_flag(const char *cmd, cli_gen *g, int argc, char **argv, int *i);
/* The model path (the default one unless given), the seed (from the clock
 * unless given) and the session's settings; 1 after printing an error. */
int cli_gen_prepare(const char *cmd, cli_gen *g, q35_session_params *ssp);
/* The sampler g asks for; 1 after printing an error. */
int cli_gen_sampler(const char *cmd, const cli_gen *g, int vocab, q35_sampler **smp);
/* Loads the model and makes its session and sampler (cli_gen_prepare);
 * 1 after printing an error. */
int cli_gen_open(const char *cmd, cli_gen *g, q35_model **m, q35_session **s, q35_sampler **smp);
void cli_gen_close(q35_model **m, q35_session **s, q35_sampler **smp);
/* The chat template (--chat-template, else the model's own) rendering the
 * model's BOS/EOS; 1 after printing an error. */
int cli_gen_template(const char *cmd, cli_gen *g, const q35_model *m, q35_chat_template **t);

/* A conversation in q35_chat_render's format: n messages (roles are
 * plain words), add_generation_prompt; malloc'ed. */
char *cli_chat_json(const char *const *roles, const char *const *contents, int n, int add_generation_prompt);

/* The token ids of n messages rendered by template t with
 * add_generation_prompt (q35_chat_render, then q35_chat_tokenize); 1 after
 * printing an error. */
int cli_chat_ids(const char *cmd, const q35_model *m, const q35_chat_template *t, const char *const *roles,
                 const char *const *contents, int n, int **ids, int *n_ids);

/* s (len bytes of UTF-8) as JSON.stringify writes it; malloc'ed. */
char *cli_json_string(const char *s, size_t len, size_t *out_len);

/* Prints "q35 CMD: message" as one line on stderr; returns 1 (exit status). */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict numbers: the whole string must parse and lie in [lo, hi].
 * On failure they print an error naming the flag and return -1. */
int cli_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out);
int cli_float(const char *cmd, const char *flag, const char *s, double lo, double hi,
              double *out);
int cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out);
/* A KV cache type (--kv-type): f16, f32, q8 or auto; -1 after an error. */
int cli_kv_type(const char *cmd, const char *flag, const char *s);

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

/* Checks before long work what q35_outfile_open would refuse (q35.h: a
 * folder, a dangling link, a folder not writable; with seeks, a device,
 * FIFO or socket); prints the error and returns -1 then. Writers that can
 * stream (!seeks) also ignore SIGPIPE from here on, so a reader that goes
 * away is a one-line error (EPIPE), not a silent death. */
int cli_check_output(const char *cmd, const char *path, int seeks);
/* Where a writer's report goes: stderr when out is the file stdout is
 * (q35 convert IN /dev/stdout), so it does not end up inside it; else
 * stdout. */
FILE *cli_report_stream(const char *out);

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
/* Loads a model with cli_model_params, the tokenizer (may be NULL), flags
 * and the type matrices are converted into at load (--convert-type; NULL:
 * the library's default); prints the error (with how to skip the memory
 * check where that refused it) and returns -1 on failure. What the load
 * converted is said in one line on stderr ("q35 run: converted 154
 * matrices from Q4_K/Q6_K to Q8_S at load (2.1 s)"). */
int cli_load_model(const char *cmd, const char *path, const char *tokenizer, unsigned flags,
                   const char *convert_type, q35_model **m);
/* The help line of --convert-type, for the commands that take it. */
#define CLI_CONVERT_HELP                                                                        \
    "      --convert-type T    the type matrices stored in a type q35 does not run (Q4_K,\n"    \
    "                          Q8_0, ...) become at load: Q8_S (default), Q2_5, Q3_5, Q4_5, F32\n"

/* The number of online cores (at least 1): the --threads default. */
int cli_cores(void);

/* Seconds on a monotonic clock. */
double cli_now(void);

#endif
