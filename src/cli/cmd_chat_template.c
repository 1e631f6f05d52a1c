/* cmd_chat_template.c — `q35 chat-template`: renders conversations (one
 * JSON object per stdin line, the oracle script's format) with a model's
 * or tokenizer's own chat template, or one chosen by name or file, and
 * prints each as one JSON string per line. Nothing is printed unless every
 * line renders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 chat-template [--tokenizer PATH] [--template NAME|FILE] < conversations.jsonl\n"
            "  --tokenizer PATH   a GGUF, tokenizer_config.json, tokenizer.json or Hugging Face folder:\n"
            "                     its chat template and BOS/EOS strings\n"
            "  --template NAME|FILE  a built-in template (%s) or a .jinja file instead\n"
            "                     (BOS/EOS from --tokenizer, else \"<s>\" and \"</s>\")\n"
            "Each input line: {\"messages\": [{\"role\": ..., \"content\": ...}, ...],\n"
            "\"add_generation_prompt\": true|false, ...}; further keys (tools, date_string,\n"
            "enable_thinking, ...) are variables of the template. Each output line: the\n"
            "rendered text as a JSON string.\n",
            q35_chat_template_names());
}

/* The template: --template, else the tokenizer's own, with the tokenizer's
 * BOS/EOS strings where there is one. */
int cli_chat_template(const char *cmd, const char *tok_path, const char *name, q35_chat_template **out) {
    q35_error err = {0};
    q35_chat_template *own = NULL;
    *out = NULL;
    if (tok_path && q35_chat_template_load(&own, tok_path, &err) && (err.code != Q35_ERR_UNSUPPORTED || !name)) {
        if (err.code == Q35_ERR_UNSUPPORTED)
            return cli_error(cmd, "%s; choose one with --chat-template NAME|FILE (names: %s)", err.msg,
                             q35_chat_template_names());
        return cli_error(cmd, "%s", err.msg);
    }
    if (!name) {
        *out = own;
        return 0;
    }
    if (q35_chat_template_named(out, name, &err) ||
        (own && q35_chat_template_set_tokens(*out, q35_chat_template_bos(own), q35_chat_template_eos(own), &err))) {
        q35_chat_template_free(own);
        q35_chat_template_free(*out);
        *out = NULL;
        return cli_error(cmd, "%s", err.msg);
    }
    q35_chat_template_free(own);
    return 0;
}

int cmd_chat_template(int argc, char **argv) {
    const char *C = "chat-template";
    const char *tok = NULL, *name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer") || !strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(v = cli_value(C, argc, argv, &i))) return 1;
            tok = v;
        } else if (!strcmp(a, "--template") || !strcmp(a, "--chat-template")) {
            if (!(v = cli_value(C, argc, argv, &i))) return 1;
            name = v;
        } else return cli_error(C, "unknown flag '%s' (see q35 chat-template --help)", a);
    }
    if (!tok && !name) return cli_error(C, "give --tokenizer PATH or --template NAME|FILE (see --help)");
    q35_chat_template *t = NULL;
    if (cli_chat_template(C, tok, name, &t)) return 1;

    char *line = NULL, *outs = NULL;
    size_t cap = 0, n_out = 0, out_cap = 0;
    ssize_t len;
    long lineno = 0;
    int status = 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        q35_error err = {0};
        char *text = NULL, *json = NULL;
        size_t tlen = 0, jlen = 0;
        if (q35_chat_render(t, line, (size_t)len, NULL, &text, &tlen, &err)) {
            status = cli_error(C, "stdin line %ld: %s", lineno, err.msg);
            break;
        }
        json = cli_json_string(text, tlen, &jlen);
        free(text);
        if (!json) {
            status = cli_error(C, "out of memory");
            break;
        }
        if (n_out + jlen + 2 > out_cap) {
            size_t nc = out_cap ? out_cap : 4096;
            while (n_out + jlen + 2 > nc) nc *= 2;
            char *p = realloc(outs, nc);
            if (!p) {
                free(json);
                status = cli_error(C, "out of memory");
                break;
            }
            outs = p;
            out_cap = nc;
        }
        memcpy(outs + n_out, json, jlen);
        n_out += jlen;
        outs[n_out++] = '\n';
        free(json);
    }
    if (!status && lineno == 0) status = cli_error(C, "no conversations on stdin");
    if (!status && n_out && fwrite(outs, 1, n_out, stdout) != n_out) status = cli_error(C, "cannot write stdout");
    free(line);
    free(outs);
    q35_chat_template_free(t);
    return status;
}
