/* main.c — the q35 program: dispatches to one subcommand per file. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 COMMAND [flags]   (q35 COMMAND --help for its flags)\n"
            "  run         generate text from a prompt\n"
            "  perplexity  score a text file (documents separated by blank lines)\n"
            "  info        a model's hyperparameters and tensors\n"
            "  convert     write a model as GGUF (F32 or F16)\n"
            "  quantize    write a model in a Q3_5-family type\n"
            "  imatrix     collect activation statistics for quantize --imatrix\n"
            "  synth       write a random-weight model in a real model's shape (speed work)\n"
            "  bench       prompt and generation speed, as llama-bench (--roofline: vs bandwidth)\n"
            "  chat        talk with a model: one user turn per stdin line, the KV cache kept\n"
            "  chat-template  render conversations (JSON lines) with a chat template\n"
            "  tokenize    text to token ids and back, with any tokenizer q35 reads\n"
            "  serve       an OpenAI-compatible HTTP server with continuous batching\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) return cmd_run(NULL, argc - 1, argv + 1);
    if (strcmp(cmd, "perplexity") == 0) return cmd_perplexity(NULL, argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "convert") == 0) return cmd_convert(argc - 1, argv + 1);
    if (strcmp(cmd, "quantize") == 0) return cmd_quantize(argc - 1, argv + 1);
    if (strcmp(cmd, "imatrix") == 0) return cmd_imatrix(argc - 1, argv + 1);
    if (strcmp(cmd, "synth") == 0) return cmd_synth(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(NULL, argc - 1, argv + 1);
    if (strcmp(cmd, "chat") == 0) return cmd_chat(argc - 1, argv + 1);
    if (strcmp(cmd, "chat-template") == 0) return cmd_chat_template(argc - 1, argv + 1);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0) return cmd_serve(NULL, argc - 1, argv + 1);
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "q35: unknown command '%s' (try q35 --help)\n", cmd);
    return 1;
}
