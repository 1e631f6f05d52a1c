/* cmd_chat.c — `q35 chat`: a conversation with a model. Each stdin line
 * is one user turn. Per turn the whole conversation is rendered with the
 * chat template (add_generation_prompt) and tokenized; the tokens the KV
 * cache already holds (the longest common prefix with those evaluated so
 * far) are kept, only the rest is evaluated; the reply is generated until
 * the end-of-turn token and becomes the assistant's message. One line per
 * turn on stderr says how many tokens were reused and evaluated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 chat [-m MODEL] [--chat-template NAME|FILE] [--system TEXT] [flags] < turns\n"
            "Each stdin line is a user's turn (empty lines are skipped); each reply is printed as\n"
            "one line. The KV cache is kept between turns: only the new part of the formatted\n"
            "conversation is evaluated. Per turn one line on stderr:\n"
            "  turn T: prompt P tokens, R reused from the cache, E evaluated; G generated; C in the cache\n"
            "  -n N                    tokens per reply at most (default 256)\n"
            "      --system TEXT       a system message first\n"
            "      --no-cache-reuse    evaluate the whole conversation every turn (for checking)\n"
            CLI_GEN_USAGE);
}

typedef struct convo {
    char **roles, **texts;
    int n, cap;
} convo;

static int add_msg(convo *c, const char *role, const char *text, size_t len) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        char **r = realloc(c->roles, (size_t)cap * sizeof *r);
        if (!r) return -1;
        c->roles = r;
        char **t = realloc(c->texts, (size_t)cap * sizeof *t);
        if (!t) return -1;
        c->texts = t;
        c->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, text, len);
    copy[len] = '\0';
    c->roles[c->n] = (char *)role;
    c->texts[c->n++] = copy;
    return 0;
}

static void free_convo(convo *c) {
    for (int i = 0; i < c->n; i++) free(c->texts[i]);
    free(c->roles);
    free(c->texts);
}

int cmd_chat(int argc, char **argv) {
    const char *C = "chat";
    const char *system = NULL;
    int reuse = 1;
    cli_gen g;
    cli_gen_defaults(&g);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        int r = cli_gen_flag(C, &g, argc, argv, &i);
        if (r < 0) return 1;
        if (r) continue;
        if (!strcmp(a, "--system")) {
            if (!(system = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--no-cache-reuse")) reuse = 0;
        else return cli_error(C, "unknown flag '%s' (see q35 chat --help)", a);
    }
    q35_model *m = NULL;
    q35_session *s = NULL;
    q35_sampler *smp = NULL;
    q35_chat_template *tpl = NULL;
    if (cli_gen_open(C, &g, &m, &s, &smp)) return 1;
    const int ctx = q35_session_n_ctx(s);
    convo cv = {0};
    int *hist = calloc((size_t)ctx + 1, sizeof *hist); /* the tokens in the KV cache */
    int n_hist = 0, status = 1, turn = 0;
    char *line = NULL, *reply = NULL, *piece = NULL; /* piece: the latest token's bytes */
    size_t piece_cap = 0;
    size_t cap = 0, reply_cap = 0;
    ssize_t len;
    if (cli_gen_template(C, &g, m, &tpl)) goto done;
    if (!hist || (system && add_msg(&cv, "system", system, strlen(system)))) {
        cli_error(C, "out of memory");
        goto done;
    }
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        turn++;
        q35_error err = {0};
        int *ids = NULL, n_ids = 0;
        if (add_msg(&cv, "user", line, (size_t)len)) {
            cli_error(C, "out of memory");
            goto done;
        }
        if (cli_chat_ids(C, m, tpl, (const char *const *)cv.roles, (const char *const *)cv.texts, cv.n, &ids, &n_ids))
            goto done;
        if (n_ids >= ctx) {
            free(ids);
            cli_error(C, "turn %d: the conversation is %d tokens, the model's context is %d", turn, n_ids, ctx);
            goto done;
        }
        /* keep what the cache holds of this prompt; at least the last token is evaluated */
        int keep = 0;
        while (reuse && keep < n_hist && keep < n_ids - 1 && hist[keep] == ids[keep]) keep++;
        const float *logits = NULL;
        if (q35_session_rewind(s, keep, &err) ||
            q35_session_eval_batch(s, ids + keep, n_ids - keep, NULL, &logits, &err)) {
            free(ids);
            cli_error(C, "%s", err.msg);
            goto done;
        }
        memcpy(hist + keep, ids + keep, (size_t)(n_ids - keep) * sizeof *hist);
        n_hist = n_ids;
        int n_prompt = n_ids;
        free(ids);

        /* the reply, until the end of turn */
        long limit = g.n_predict < 0 || g.n_predict > ctx - n_hist ? ctx - n_hist : g.n_predict;
        int n_gen = 0;
        size_t reply_len = 0;
        while (n_gen < limit) {
            int next = q35_sampler_sample(smp, logits, hist, n_hist);
            if (q35_token_is_eog(m, next)) break;
            const size_t pl = q35_detokenize_all(m, hist[n_hist - 1], next, &piece, &piece_cap);
            if (pl == (size_t)-1) {
                cli_error(C, "out of memory");
                goto done;
            }
            if (reply_len + pl + 1 > reply_cap) {
                size_t nc = reply_cap ? 2 * reply_cap : 1024;
                while (reply_len + pl + 1 > nc) nc *= 2;
                char *p = realloc(reply, nc);
                if (!p) {
                    cli_error(C, "out of memory");
                    goto done;
                }
                reply = p;
                reply_cap = nc;
            }
            memcpy(reply + reply_len, piece, pl);
            reply_len += pl;
            fwrite(piece, 1, pl, stdout);
            fflush(stdout);
            n_gen++;
            if (n_gen == limit || n_hist + 1 >= ctx) break; /* its logits are not needed */
            hist[n_hist] = next;
            if (q35_session_eval(s, next, &logits, &err)) {
                cli_error(C, "%s", err.msg);
                goto done;
            }
            n_hist++;
        }
        fputc('\n', stdout);
        fflush(stdout);
        fprintf(stderr, "turn %d: prompt %d tokens, %d reused from the cache, %d evaluated; %d generated; "
                "%d in the cache\n", turn, n_prompt, keep, n_prompt - keep, n_gen, q35_session_pos(s));
        if (add_msg(&cv, "assistant", reply ? reply : "", reply_len)) {
            cli_error(C, "out of memory");
            goto done;
        }
    }
    if (turn == 0) {
        cli_error(C, "no turns on stdin (one user turn per line)");
        goto done;
    }
    status = 0;
done:
    free(line);
    free(reply);
    free(piece);
    free(hist);
    free_convo(&cv);
    q35_chat_template_free(tpl);
    cli_gen_close(&m, &s, &smp);
    return status;
}
