/* cmd_run.c — `q35 run`: generate text from a prompt, streaming it, then
 * one line of prompt and generation speed on stderr. Flags follow
 * llama.cpp's llama-cli. With --chat the prompt is one user turn of a
 * conversation formatted by the model's chat template (or
 * --chat-template), and only the reply is printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/engine.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 run [-m MODEL] [--tokenizer PATH] [-p PROMPT] [flags]\n"
            "  -p, --prompt TEXT       prompt (default \"Once upon a time\"); special tokens spelled\n"
            "                          in it (<|im_start|> ...) are read as those tokens\n"
            "      --chat              the prompt is a user's turn: formatted by the chat template\n"
            "                          (with add_generation_prompt), generation ends at the end of turn\n"
            "      --system TEXT       with --chat: a system message before it\n"
            CLI_GEN_USAGE);
}

/* Writes the bytes token adds after prev (any bytes: a character split
 * over two tokens is whole once both are out). */
static int put_piece(const q35_model *m, int prev, int token, char **buf, size_t *cap) {
    const size_t n = q35_detokenize_all(m, prev, token, buf, cap);
    if (n == (size_t)-1) return cli_error("run", "out of memory");
    fwrite(*buf, 1, n, stdout);
    return 0;
}

int cmd_run(cli_job *job, int argc, char **argv) {
    const char *C = "run";
    const char *prompt = "Once upon a time", *system = NULL;
    int chat = 0;
    cli_gen g;
    cli_gen_defaults(&g);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        int r = cli_gen_flag(C, &g, argc, argv, &i);
        if (r < 0) return 1;
        if (r) continue;
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--system")) {
            if (!(system = cli_value(C, argc, argv, &i))) return 1;
        } else return cli_error(C, "unknown flag '%s' (see q35 run --help)", a);
    }
    if (!*prompt) return cli_error(C, "-p: the prompt is empty");
    if (!chat && (system || g.chat_template))
        return cli_error(C, "%s needs --chat", system ? "--system" : "--chat-template");

    q35_error err = {0};
    q35_model *m = NULL;
    cli_engine *s = NULL;
    q35_sampler *smp = NULL;
    q35_chat_template *tpl = NULL;
    int *ids = NULL, n_ids = 0, status = 1;
    char *piece = NULL; /* the latest token's bytes (q35_detokenize_all) */
    size_t piece_cap = 0;
    float *logits = NULL;
    q35_session_params ssp;
    if (cli_gen_prepare(C, &g, &ssp) || cli_engine_load(job, C, g.model_path, g.tok_path, g.convert_type, &m)) return 1;
    if (cli_engine_open(job, m, &ssp, &s, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    if (g.ngl) fprintf(stderr, "q35 %s: %s\n", C, cli_engine_device(s));
    const int vocab = q35_model_config(m)->vocab_size;
    if (cli_gen_sampler(C, &g, vocab, &smp)) goto done;
    if (!(logits = malloc((size_t)vocab * sizeof *logits))) {
        cli_error(C, "out of memory");
        goto done;
    }
    if (chat) {
        const char *roles[2] = {"system", "user"}, *contents[2] = {system, prompt};
        const int n = system ? 2 : 1;
        if (cli_gen_template(C, &g, m, &tpl) ||
            cli_chat_ids(C, m, tpl, roles + 2 - n, contents + 2 - n, n, &ids, &n_ids))
            goto done;
    } else if (/* as llama-cli: BOS as the tokenizer says, special tokens
                * spelled in the prompt (<|im_start|> ...) read as those tokens */
               q35_tokenizer_encode(q35_model_tokenizer(m), prompt, strlen(prompt),
                                    Q35_TOKENIZE_ADD_SPECIAL | Q35_TOKENIZE_PARSE_SPECIAL, &ids, &n_ids, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    if (n_ids == 0) {
        cli_error(C, "-p: the prompt gives no tokens");
        goto done;
    }
    const int n_ctx = cli_engine_n_ctx(s);
    if (n_ids >= n_ctx) {
        cli_error(C, "-p: the prompt is %d tokens, the context is %d", n_ids, n_ctx);
        goto done;
    }
    long n_predict = g.n_predict, room = n_ctx - n_ids;
    if (n_predict < 0 || n_predict > room) n_predict = room;
    int *hist = realloc(ids, (size_t)(n_ids + n_predict) * sizeof *hist);
    if (!hist) {
        cli_error(C, "out of memory");
        goto done;
    }
    ids = hist;

    /* the prompt in batches, then echoed (not a chat's template text; from
     * the text's start: BOS, if the tokenizer put one there, prints nothing) */
    double t0 = cli_now();
    if (cli_eval(s, ids, n_ids, 0, logits, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    double t_prompt = cli_now() - t0;
    for (int i = 0; i < n_ids && !chat; i++)
        if (put_piece(m, i ? ids[i - 1] : -1, ids[i], &piece, &piece_cap)) goto done;
    fflush(stdout);

    /* generation: until an end-of-generation token (EOS, EOT, <|im_end|>,
     * ..., or BOS: llama2.c's stories end there) */
    int n_gen = 0, n_evals = 0;
    double t1 = cli_now();
    while (n_gen < n_predict) {
        int next = q35_sampler_sample(smp, logits, ids, n_ids);
        if (q35_token_is_eog(m, next)) break;
        if (put_piece(m, ids[n_ids - 1], next, &piece, &piece_cap)) goto done;
        fflush(stdout);
        ids[n_ids++] = next;
        n_gen++;
        if (n_gen == n_predict) break; /* its logits are not needed */
        if (cli_eval(s, &next, 1, 0, logits, &err)) {
            cli_error(C, "%s", err.msg);
            goto done;
        }
        n_evals++;
    }
    double t_gen = cli_now() - t1;
    fputc('\n', stdout);
    fflush(stdout);
    fprintf(stderr,
            "prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.1f tokens/s | seed %llu\n",
            n_ids - n_gen, t_prompt > 0 ? (n_ids - n_gen) / t_prompt : 0.0, n_gen,
            t_gen > 0 && n_evals > 0 ? n_evals / t_gen : 0.0, (unsigned long long)g.seed);
    status = 0;
done:
    free(ids);
    free(piece);
    free(logits);
    q35_chat_template_free(tpl);
    q35_sampler_free(smp);
    cli_engine_close(s);
    cli_engine_unload(job, m);
    return status;
}
