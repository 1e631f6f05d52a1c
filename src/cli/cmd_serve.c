/* cmd_serve.c — `q35 serve` and `q35-mpi serve`: the OpenAI-compatible
 * server (src/server), evaluating through the command's engine (engine.h:
 * a session here, or the ranks of the MPI job). Flags follow
 * llama-server's. SIGINT/SIGTERM stop it: new connections are refused,
 * queued requests fail, running ones finish; a second signal cancels
 * those too. */
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "server/server.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 serve -m MODEL [flags]\n"
            "  -m, --model FILE        model (default: stories260K, see README)\n"
            "      --tokenizer FILE    tokenizer .bin (default: beside the model)\n"
            "      --host ADDR         address to listen on (default 127.0.0.1: this machine only)\n"
            "      --port N            port (default 8080; 0: any free port, printed)\n"
            "  -np, --parallel N       requests generated at once, one slot each (default 1)\n"
            "  -c, --ctx-size N        positions per slot: prompt and generated tokens (default: the\n"
            "                          model's context, at most 4096)\n"
            "  -t, --threads N         threads (default: number of cores)\n"
            "  -b, --batch-size N      tokens evaluated per step, generating slots and prompt chunks\n"
            "                          together (default 128)\n"
            "      --queue N           requests that may wait for a slot; beyond: 503 (default 64)\n"
            "      --api-key KEY       require \"Authorization: Bearer KEY\" (all but /health)\n"
            "      --timeout S         seconds a connection may stay idle (default 600)\n"
            "      --alias NAME        the model's name in responses (default: the file's)\n"
            "      --chat-template NAME|FILE  the chat template instead of the model's own (a model\n"
            "                          without one gets chatml, as llama-server's)\n"
            CLI_CONVERT_HELP);
}

/* The template chats are formatted with: name (--chat-template) if given,
 * else the model's own, else chatml (*how says so). 1 after an error. */
static int open_template(const char *C, const char *model_path, const char *name, const q35_model *m,
                         q35_chat_template **t, const char **how) {
    if (!name) {
        q35_error err = {0};
        const int rc = q35_chat_template_load(t, model_path, &err);
        if (rc == Q35_OK) return 0;
        if (rc != Q35_ERR_UNSUPPORTED) return cli_error(C, "%s", err.msg);
        name = "chatml";
        *how = "chatml (built in: the model has no chat template; choose one with --chat-template)";
    }
    cli_gen g;
    cli_gen_defaults(&g);
    g.model_path = model_path;
    g.chat_template = name;
    return cli_gen_template(C, &g, m, t);
}

/* The scheduler's evaluator (server/sched.h) over the engine. */
static int eval_decode(void *e, const q35_batch *b, float *out, q35_error *err) {
    return cli_engine_decode(e, b, out, err);
}
static int eval_trim(void *e, int seq, int p, q35_error *err) { return cli_engine_trim(e, seq, p, err); }
static int eval_submit(void *e, const q35_batch *b, q35_error *err) { return cli_engine_submit(e, b, err); }
static int eval_collect(void *e, float *out, q35_error *err) { return cli_engine_collect(e, out, err); }

int cmd_serve(cli_job *job, int argc, char **argv) {
    const char *C = "serve";
    const char *model_path = NULL, *tok_path = NULL, *chat_template = NULL, *convert = NULL;
    srv_params p = srv_default_params();
    int n_ctx = 0, n_threads = 0;
    long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
#define VAL() if (!(val = cli_value(C, argc, argv, &i))) return 1
#define INT(lo, hi) if (cli_int(C, a, val, lo, hi, &v)) return 1
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model_path = val; }
        else if (!strcmp(a, "--tokenizer")) { VAL(); tok_path = val; }
        else if (!strcmp(a, "--host")) { VAL(); p.host = val; }
        else if (!strcmp(a, "--port")) { VAL(); INT(0, 65535); p.port = (int)v; }
        else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) { VAL(); INT(1, 256); p.sched.n_parallel = (int)v; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { VAL(); INT(1, 1L << 20); n_ctx = (int)v; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); INT(1, 1024); n_threads = (int)v; }
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) { VAL(); INT(1, 4096); p.sched.n_batch = (int)v; }
        else if (!strcmp(a, "--queue")) { VAL(); INT(0, 1L << 16); p.sched.n_queue = (int)v; }
        else if (!strcmp(a, "--api-key")) {
            VAL();
            if (!*val) return cli_error(C, "--api-key: the key is empty");
            p.api_key = val;
        }
        else if (!strcmp(a, "--timeout")) { VAL(); INT(1, 1L << 20); p.timeout = (int)v; }
        else if (!strcmp(a, "--alias")) { VAL(); p.model_name = val; }
        else if (!strcmp(a, "--chat-template")) { VAL(); chat_template = val; }
        else if (!strcmp(a, "--convert-type")) { VAL(); convert = val; }
        else return cli_error(C, "unknown flag '%s' (see q35 serve --help)", a);
#undef VAL
#undef INT
    }
    char found[4096];
    if (!model_path) {
        if (cli_default_model(found, sizeof found) != 0)
            return cli_error(C, "no model: give -m FILE, or put stories260K/stories260K.bin under "
                                "$Q35_MODELS, ./models or ../shared/models (scripts/story.sh downloads it)");
        model_path = found;
    }
    /* every thread started from here on leaves SIGINT/SIGTERM to sigwait below */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    q35_model *m = NULL;
    if (cli_engine_load(job, C, model_path, tok_path, convert, &m)) return 1;
    if (n_threads == 0) n_threads = cli_cores();
    const q35_config *cfg = q35_model_config(m);
    if (n_ctx > cfg->seq_len) {
        cli_error(C, "--ctx-size %d is beyond the model's context of %d", n_ctx, cfg->seq_len);
        cli_engine_unload(job, m);
        return 1;
    }
    p.log = stderr;
    q35_chat_template *t = NULL;
    const char *chats = chat_template ? chat_template : "the model's template";
    if (open_template(C, model_path, chat_template, m, &t, &chats)) {
        cli_engine_unload(job, m);
        return 1;
    }
    p.chat_template = t;
    /* one sequence per slot; a step's batch holds every slot's next token */
    q35_session_params sp = q35_session_default_params();
    sp.n_threads = n_threads;
    sp.n_seq = p.sched.n_parallel;
    sp.n_ctx = n_ctx;
    sp.n_batch = p.sched.n_batch > p.sched.n_parallel ? p.sched.n_batch : p.sched.n_parallel;
    cli_engine *e = NULL;
    srv *s = NULL;
    q35_error err = {0};
    if (cli_engine_open(job, m, &sp, &e, &err) == 0) {
        /* q35-mpi: the slots step in groups, one group's batch in the stages while another's is sampled */
        p.sched.eval = (srv_eval){.user = e, .decode = eval_decode, .trim = eval_trim, .n_ctx = cli_engine_n_ctx(e),
                                  .submit = eval_submit, .collect = eval_collect,
                                  .depth = cli_engine_stages(e)};
        /* The steps run on the scheduler's thread, with its own OpenMP
         * team. This thread's team (from loading) would stay, asleep: with
         * more OpenMP threads than cores, libgomp's barriers sleep after a
         * short spin, and each step paid futex waits and wake-ups (perf:
         * 10% of the server's time in 8-stream decode, steps 41.5 ms against
         * 29 ms for the same batch in q35 bench). */
        omp_pause_resource_all(omp_pause_hard);
        srv_start(&s, m, model_path, &p, &err);
    }
    if (!s) {
        cli_error(C, "%s", err.msg);
        cli_engine_close(e);
        q35_chat_template_free(t);
        cli_engine_unload(job, m);
        return 1;
    }
    fprintf(stderr, "q35 serve: %s, %d slot%s, %d threads, batch %d, queue %d; chats: %s\n", model_path,
            p.sched.n_parallel, p.sched.n_parallel == 1 ? "" : "s", n_threads, p.sched.n_batch, p.sched.n_queue,
            chats);
    if (job)
        fprintf(stderr, "q35-mpi serve: %s; rank 0 is pid %d: SIGTERM or SIGINT to it ends the job cleanly\n",
                cli_engine_device(e), (int)getpid());
    const int v6 = strchr(p.host, ':') != NULL;
    printf("q35 serve: listening on http://%s%s%s:%d\n", v6 ? "[" : "", p.host, v6 ? "]" : "", srv_port(s));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    cli_engine_signalled(job); /* q35-mpi: mpirun's SIGTERM after a rank died ends the job here, naming it */
    fprintf(stderr, "q35 serve: %s: finishing the requests in flight (again to cancel them)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    srv_stop(s, 1);
    const struct timespec tick = {0, 50 * 1000 * 1000};
    double give_up = 0; /* after a second signal: the cancelled streams' last events get this long */
    while (!srv_idle(s) && (!give_up || cli_now() < give_up))
        if (sigtimedwait(&stop, NULL, &tick) > 0 && !give_up) {
            fprintf(stderr, "q35 serve: cancelling the requests in flight\n");
            srv_stop(s, 2);
            give_up = cli_now() + 5;
        }
    srv_free(s);
    cli_engine_close(e);
    q35_chat_template_free(t);
    cli_engine_unload(job, m);
    fprintf(stderr, "q35 serve: stopped\n");
    return 0;
}
