/* cmd_run.c — `q35 run`: generate text from a prompt, streaming it, then
 * one line of prompt and generation speed on stderr. Flags follow
 * llama.cpp's llama-cli. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/engine.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 run [-m MODEL] [--tokenizer FILE] [-p PROMPT] [flags]\n"
            "  -m, --model FILE        model (default: stories260K, see README)\n"
            "      --tokenizer FILE    tokenizer .bin (default: tok<vocab>.bin or tokenizer.bin beside the model)\n"
            "  -p, --prompt TEXT       prompt (default \"Once upon a time\")\n"
            "  -n, --n-predict N       tokens to generate, -1 = until the context is full (default 256)\n"
            "      --temp T            temperature, 0 = greedy (default 0.8)\n"
            "      --top-k K           0 = off (default 40)\n"
            "      --top-p P           1 = off (default 0.95)\n"
            "      --min-p P           0 = off (default 0.05)\n"
            "      --repeat-penalty R  1 = off (default 1.0)\n"
            "      --repeat-last-n N   tokens the penalty looks back over (default 64)\n"
            "  -s, --seed S            random seed (default: from the clock; printed)\n"
            "  -t, --threads N         threads (default: number of cores)\n"
            "  -b, --batch-size N      prompt tokens evaluated together (default 128)\n"
            "      --kv-type T         KV cache: f16, f32 or auto (default: f16 for Q3_5-family\n"
            "                          models, f32 for fp32 ones)\n"
            "      --gpu               run the whole model on the GPU (a `make cuda` build)\n"
            "  -ngl, --n-gpu-layers N  put the first N layers on the GPU, the rest on the CPU\n"
            "                          (N >= the layer count: all, as --gpu)\n");
}

int cmd_run(cli_job *job, int argc, char **argv) {
    const char *C = "run";
    const char *model_path = NULL, *tok_path = NULL, *prompt = "Once upon a time";
    long n_predict = 256, threads = 0, top_k = 40, last_n = 64;
    double temp = 0.8, top_p = 0.95, min_p = 0.05, penalty = 1.0;
    uint64_t seed = 0;
    int have_seed = 0;
    long ngl = 0; /* layers on the GPU; -1 = all */
    long batch = 0; /* 0: the library's default */
    const char *kv_type = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(C, argc, argv, &i))) return 1
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model_path = v; }
        else if (!strcmp(a, "--tokenizer")) { VAL(); tok_path = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { VAL(); prompt = v; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            VAL(); if (cli_int(C, a, v, -1, 1L << 30, &n_predict)) return 1;
            if (n_predict == 0) return cli_error(C, "%s 0: nothing to generate (give N >= 1, or -1 for until the context is full)", a);
        }
        else if (!strcmp(a, "--temp")) { VAL(); if (cli_float(C, a, v, 0, 1e6, &temp)) return 1; }
        else if (!strcmp(a, "--top-k")) { VAL(); if (cli_int(C, a, v, 0, 1L << 30, &top_k)) return 1; }
        else if (!strcmp(a, "--top-p")) { VAL(); if (cli_float(C, a, v, 1e-9, 1, &top_p)) return 1; }
        else if (!strcmp(a, "--min-p")) { VAL(); if (cli_float(C, a, v, 0, 1, &min_p)) return 1; }
        else if (!strcmp(a, "--repeat-penalty")) { VAL(); if (cli_float(C, a, v, 1e-6, 1e6, &penalty)) return 1; }
        else if (!strcmp(a, "--repeat-last-n")) { VAL(); if (cli_int(C, a, v, 0, 1L << 30, &last_n)) return 1; }
        else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) { VAL(); if (cli_u64(C, a, v, &seed)) return 1; have_seed = 1; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (cli_int(C, a, v, 1, 1024, &threads)) return 1; }
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) { VAL(); if (cli_int(C, a, v, 1, 1L << 20, &batch)) return 1; }
        else if (!strcmp(a, "--kv-type")) {
            VAL();
            if (strcmp(v, "f16") && strcmp(v, "f32") && strcmp(v, "auto"))
                return cli_error(C, "--kv-type %s: give f16, f32 or auto", v);
            kv_type = v;
        }
        else if (!strcmp(a, "--gpu")) ngl = -1;
        else if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers") || !strcmp(a, "--gpu-layers")) {
            VAL(); if (cli_int(C, a, v, 0, 1L << 20, &ngl)) return 1;
        }
        else return cli_error(C, "unknown flag '%s' (see q35 run --help)", a);
#undef VAL
    }
    if (!*prompt) return cli_error(C, "-p: the prompt is empty");
    char found[4096];
    if (!model_path) {
        if (cli_default_model(found, sizeof found) != 0)
            return cli_error(C, "no model: give -m FILE, or put stories260K/stories260K.bin under "
                                "$Q35_MODELS, ./models or ../shared/models (scripts/story.sh downloads it)");
        model_path = found;
    }
    if (!have_seed) seed = (uint64_t)time(NULL);

    q35_error err = {0};
    q35_model *m = NULL;
    cli_engine *s = NULL;
    q35_sampler *smp = NULL;
    int *ids = NULL, n_ids = 0, status = 1;
    float *logits = NULL;
    q35_session_params ssp;
    if (cli_session_params(C, &ssp) || cli_engine_load(job, C, model_path, tok_path, &m)) goto done;
    ssp.n_threads = (int)threads;
    ssp.n_gpu_layers = (int)ngl;
    if (batch) ssp.n_batch = (int)batch;
    ssp.kv_type = kv_type;
    if (cli_engine_open(job, m, &ssp, &s, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    if (ngl) fprintf(stderr, "q35 run: %s\n", cli_engine_device(s));
    const q35_config *cfg = q35_model_config(m);
    if (!(logits = malloc((size_t)cfg->vocab_size * sizeof *logits))) {
        cli_error(C, "out of memory");
        goto done;
    }
    q35_sampler_params sp = {(float)temp, (int)top_k, (float)top_p, (float)min_p,
                             (float)penalty, (int)last_n, seed};
    if (q35_sampler_new(&smp, &sp, cfg->vocab_size, &err) ||
        q35_tokenize(m, prompt, strlen(prompt), 1, &ids, &n_ids, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    if (n_ids >= cfg->seq_len) {
        cli_error(C, "-p: the prompt is %d tokens, the model's context is %d", n_ids, cfg->seq_len);
        goto done;
    }
    long room = cfg->seq_len - n_ids;
    if (n_predict < 0 || n_predict > room) n_predict = room;
    int *hist = realloc(ids, (size_t)(n_ids + n_predict) * sizeof *hist);
    if (!hist) {
        cli_error(C, "out of memory");
        goto done;
    }
    ids = hist;

    /* the prompt in batches, then echoed */
    char piece[256];
    double t0 = cli_now();
    if (cli_eval(s, ids, n_ids, 0, logits, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    double t_prompt = cli_now() - t0;
    for (int i = 1; i < n_ids; i++) {
        q35_detokenize(m, ids[i - 1], ids[i], piece, sizeof piece);
        fputs(piece, stdout);
    }
    fflush(stdout);

    /* generation */
    int n_gen = 0, n_evals = 0, bos = q35_token_bos(m), eos = q35_token_eos(m);
    double t1 = cli_now();
    while (n_gen < n_predict) {
        int next = q35_sampler_sample(smp, logits, ids, n_ids);
        if (next == eos || next == bos) break; /* llama2.c's stories end at BOS */
        q35_detokenize(m, ids[n_ids - 1], next, piece, sizeof piece);
        fputs(piece, stdout);
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
            t_gen > 0 && n_evals > 0 ? n_evals / t_gen : 0.0, (unsigned long long)seed);
    status = 0;
done:
    free(ids);
    free(logits);
    q35_sampler_free(smp);
    cli_engine_close(s);
    cli_engine_unload(job, m);
    return status;
}
