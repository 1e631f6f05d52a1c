/* test_chat.c — chat templates: the Jinja interpreter against
 * @huggingface/jinja 0.5.13 (the oracle, run with node at test time) on
 * the real templates of Llama 3.2, Qwen 2.5, Qwen 3, Gemma 3, Mistral Nemo
 * and Phi-3, on every template in llama.cpp's models/templates and in its
 * vocabulary GGUFs, and on tests/data/chat/cases.jsonl (one feature or
 * quirk per case); the built-in templates; reading templates from GGUF and
 * Hugging Face files; bad templates, endless ones and bad conversations
 * failing with one line; and the q35 chat-template / run --chat / chat
 * commands, the KV cache reused between turns. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat/jinja.h"
#include "harness.h"
#include "io/gguf.h"
#include "q35.h"

#include "clirun.h"

#define DATA "tests/data/chat/"

/* ---- helpers ------------------------------------------------------------------------ */
static char *render_src(const char *src, const char *conv, const q35_chat_limits *lim, q35_error *err) {
    q35_chat_template *t = NULL;
    char *out = NULL;
    size_t n;
    if (q35_chat_template_parse(&t, src, strlen(src), "t", err) == 0)
        q35_chat_render(t, conv, strlen(conv), lim, &out, &n, err);
    q35_chat_template_free(t);
    return out;
}

static const char *CONV1 =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"},"
    " {\"role\": \"assistant\", \"content\": \"Hello\"}, {\"role\": \"user\", \"content\": \"Bye\"}],"
    " \"add_generation_prompt\": true}";

static void expect_render(const char *src, const char *conv, const char *want) {
    q35_error err = {0};
    char *got = render_src(src, conv, NULL, &err);
    CHECKF(got && strcmp(got, want) == 0, "%s\n  got  %s\n  want %s", src, got ? got : err.msg, want);
    free(got);
}

/* one line, naming mention, with this code */
static void expect_fail(const char *src, const char *conv, const q35_chat_limits *lim, int code, const char *mention) {
    q35_error err = {0};
    char *got = render_src(src, conv, lim, &err);
    CHECKF(!got, "%s: rendered, want an error naming '%s'", src, mention);
    CHECKF(err.code == code, "%.60s: error code %d, want %d (%s)", src, err.code, code, err.msg);
    CHECKF(strstr(err.msg, mention) && !strchr(err.msg, '\n'), "%.60s: error '%s' does not name '%s'", src, err.msg,
           mention);
    free(got);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b) b[fread(b, 1, (size_t)n, f)] = '\0';
    fclose(f);
    return b;
}

/* the non-empty lines of a file */
static int read_lines(const char *path, char ***lines) {
    char *text = read_text(path);
    int n = 0, cap = 0;
    *lines = NULL;
    if (!text) return -1;
    for (char *p = text, *e; *p; p = e + (*e != 0)) {
        e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        if (e > p) {
            if (n == cap) *lines = realloc(*lines, (size_t)(cap = cap ? 2 * cap : 64) * sizeof **lines);
            (*lines)[n] = strndup(p, (size_t)(e - p));
            n++;
        }
    }
    free(text);
    return n;
}

static void free_lines(char **l, int n) {
    for (int i = 0; i < n; i++) free(l[i]);
    free(l);
}

static const char *fix(const char *name, const char *text) { return fixture(name, text, strlen(text)); }

static int have_node(void) { return system("command -v node >/dev/null 2>&1") == 0; }

/* The oracle's answers: one line each. script: "jinja-render.mjs" (the
 * oracle script itself, run in the oracles folder) or "cases"/"multi"
 * (tests/jinja_oracle.mjs). */
static int oracle(const char *script, const char *args, const char *input, char ***lines) {
    const char *o = oracles_dir();
    char in[PATH_MAX], me[PATH_MAX], out[600];
    if (!realpath(input, in) || !realpath("tests/jinja_oracle.mjs", me)) return -1;
    snprintf(out, sizeof out, "%s/oracle.out", tmpdir);
    size_t cap = strlen(args) + strlen(o) + 3 * PATH_MAX + 700;
    char *cmd = malloc(cap);
    if (!strcmp(script, "jinja-render.mjs"))
        snprintf(cmd, cap, "cd '%s' && node jinja-render.mjs %s < '%s' > '%s'", o, args, in, out);
    else snprintf(cmd, cap, "node '%s' '%s' %s < '%s' > '%s'", me, o, args, in, out);
    int rc = system(cmd);
    free(cmd);
    return rc != 0 ? -1 : read_lines(out, lines);
}

/* an oracle line: the rendered text (malloc'ed) or NULL for {"error": ...} */
static char *oracle_text(const char *line, int plain) {
    cJSON *j = cJSON_Parse(line);
    const cJSON *s = plain ? j : cJSON_GetObjectItemCaseSensitive(j, "out");
    char *r = cJSON_IsString(s) ? strdup(s->valuestring) : NULL;
    cJSON_Delete(j);
    return r;
}

/* Compares q35 with the oracle's lines on n conversations; returns
 * mismatches, counts the renderings (oracle succeeded) in *rendered and
 * renders both failed in *both_fail. */
static int compare(const char *name, const q35_chat_template *t, char **convs, int n, char **orc, int plain,
                   int *rendered, int *both_fail, int verbose) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        q35_error err = {0};
        char *mine = NULL, *want = oracle_text(orc[i], plain);
        size_t len;
        if (t) q35_chat_render(t, convs[i], strlen(convs[i]), NULL, &mine, &len, &err);
        else snprintf(err.msg, sizeof err.msg, "the template did not parse");
        if (want) (*rendered)++;
        if (!want && !mine) (*both_fail)++;
        int same = (!want && !mine) || (want && mine && strcmp(want, mine) == 0);
        if (!same) {
            bad++;
            if (verbose)
                fprintf(stderr, "  %s, conversation %d:\n    q35:    %.300s\n    oracle: %.300s\n", name, i + 1,
                        mine ? mine : err.msg, want ? want : orc[i]);
        }
        free(want);
        free(mine);
    }
    return bad;
}

/* ---- without the oracle -------------------------------------------------------------- */
static void test_semantics(void) {
    const char *c = CONV1;
    expect_render("{{ 1.0 }}|{{ 2 }}|{{ 1/4 }}|{{ true }}|{{ none }}|{{ x }}|{{ [1, 'a', none] }}|{{ {'k': 1.0} }}", c,
                  "1.0|2|0.25|true|||[1, \"a\", null]|{\"k\": 1}");
    expect_render("{% for m in messages %}{{ loop.index }}{{ m.role[0] }}{% if not loop.last %},{% endif %}{% endfor %}", c,
                  "1s,2u,3a,4u");
    expect_render("{% for m in messages if m.role == 'user' %}{{ m.content }}{% else %}none{% endfor %}", c, "HiBye");
    expect_render("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + m.content|length %}"
                  "{% endfor %}{{ ns.n }}", c, "19");
    expect_render("{% macro m(a, b='x') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(2, b='y') }}", c, "<1x><2y>");
    expect_render("{{ messages[1:]|map(attribute='role')|join(',') }}", c, "user,assistant,user");
    expect_render("{{ {'a': [1, {'b': none}]}|tojson(indent=2) }}", c, "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ]\n}");
    expect_render("  {%- if true %}\n  a\n  {% endif %}\nb\n", c, "  a\nb");
    expect_render("x {%- generation %} y {% endgeneration -%} z", c, "x y z");
    expect_render("{{ 'a😀b'|length }}{{ 'héllo'[1:3] }}{{ '  x  '|trim }}{{ 'a,b'.split(',') }}", c,
                  "4élx[\"a\", \"b\"]");
    expect_render("{{ '1' == 1 }}{{ [] == '' }}{{ 'b' in {'b': 1} }}{{ 1 in [1.0] }}", c, "truetruetruetrue");
    /* add_generation_prompt is JavaScript's !! of the line's value; other keys are variables */
    expect_render("{{ add_generation_prompt }}{{ bos_token }}{{ eos_token }}{{ extra }}",
                  "{\"messages\": [], \"add_generation_prompt\": \"yes\", \"extra\": 7}", "true<s></s>7");
    expect_render("{{ add_generation_prompt }}", "{\"messages\": []}", "false");
}

static void test_builtins(void) {
    const char *names = q35_chat_template_names();
    CHECKF(strstr(names, "chatml") && strstr(names, "llama3") && strstr(names, "gemma") && strstr(names, "mistral") &&
               strstr(names, "phi3"), "built-in names: %s", names);
    struct { const char *name, *want; } W[] = {
        {"chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                   "Hello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"},
        {"llama3", "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
                   "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant"
                   "<|end_header_id|>\n\n"},
        {"gemma", "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
                  "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"},
        {"mistral", "<s>[INST]Hi[/INST]Hello</s>[INST]Be brief.\n\nBye[/INST]"},
        {"phi3", "<s><|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n"},
    };
    for (size_t i = 0; i < sizeof W / sizeof W[0]; i++) {
        q35_chat_template *t = NULL;
        q35_error err = {0};
        char *out = NULL;
        size_t n;
        CHECKF(q35_chat_template_named(&t, W[i].name, &err) == 0, "built-in %s: %s", W[i].name, err.msg);
        if (t) q35_chat_render(t, CONV1, strlen(CONV1), NULL, &out, &n, &err);
        CHECKF(out && strcmp(out, W[i].want) == 0, "built-in %s renders\n%s\nwant\n%s", W[i].name, out ? out : err.msg,
               W[i].want);
        free(out);
        q35_chat_template_free(t);
    }
    q35_chat_template *t = NULL;
    q35_error err = {0};
    CHECK(q35_chat_template_named(&t, "no-such-template", &err) == Q35_ERR_ARG && !t);
    CHECKF(strstr(err.msg, "chatml"), "an unknown name lists the built-ins: %s", err.msg);

    /* all in one call */
    char *out = NULL;
    size_t n = 0;
    CHECK(q35_chat_format("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ x }}"
                          "{{ add_generation_prompt }}",
                          "[{\"role\": \"user\", \"content\": \"a\"}]", 1, "{\"x\": 5}", "B", NULL, &out, &n,
                          &err) == 0);
    CHECKF(out && strcmp(out, "Ba5true") == 0 && n == 7, "q35_chat_format: %s", out ? out : err.msg);
    free(out);
    CHECK(q35_chat_format("x", "{}", 1, NULL, NULL, NULL, &out, &n, &err) == Q35_ERR_ARG && !out);
}

/* a template that fails to parse, runs without end, or meets a bad conversation */
static void test_bad_input(void) {
    const char *c = CONV1;
    expect_fail("{% if true %}\nno end", c, NULL, Q35_ERR_FORMAT, "missing {% elif %}");
    expect_fail("line 1\nline 2\n{{ 'a' + }}", c, NULL, Q35_ERR_FORMAT, "t:3:");
    expect_fail("{% for %}", c, NULL, Q35_ERR_FORMAT, "t:1:");
    expect_fail("{{ x", c, NULL, Q35_ERR_FORMAT, "Unexpected end of input");
    expect_fail("{% include 'x.jinja' %}", c, NULL, Q35_ERR_FORMAT, "Unknown statement type: include");
    expect_fail("{{ 'bad \\q escape' }}", c, NULL, Q35_ERR_FORMAT, "Unexpected escaped character");
    expect_fail("{# never closed", c, NULL, Q35_ERR_FORMAT, "Missing end of comment tag");
    /* nesting deep enough to exhaust a stack is refused */
    char *deep = malloc(200000);
    strcpy(deep, "{{ ");
    memset(deep + 3, '(', 50000);
    strcpy(deep + 50003, "1 }}");
    expect_fail(deep, c, NULL, Q35_ERR_FORMAT, "deeper than 256");
    strcpy(deep, "{{ 1");
    for (int i = 0; i < 30000; i++) memcpy(deep + 4 + 2 * i, "+1", 3);
    strcat(deep, " }}");
    expect_fail(deep, c, NULL, Q35_ERR_FORMAT, "deeper than 256");
    free(deep);

    /* templates that loop or recurse without end stop at a limit */
    q35_chat_limits small = {200000, 0, 1u << 20, 64u << 20};
    expect_fail("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", c, &small,
                Q35_ERR_ARG, "steps (the limit)");
    expect_fail("{% for i in range(1000000000000) %}{% endfor %}", c, NULL, Q35_ERR_ARG, "steps (the limit)");
    expect_fail("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", c, NULL, Q35_ERR_ARG, "nest deeper than 100");
    expect_fail("{% macro f() %}{% call f() %}x{% endcall %}{% endmacro %}{{ f() }}", c, NULL, Q35_ERR_ARG,
                "nest deeper than 100");
    expect_fail("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", c,
                &small, Q35_ERR_ARG, "beyond 1048576 bytes");
    q35_chat_limits mem = {0, 0, 0, 4u << 20};
    expect_fail("{% for i in range(150000) %}{% set x = [i, i, i] %}{% endfor %}", c, &mem, Q35_ERR_ARG,
                "more than 4 MiB of memory");
    expect_fail("{% for i in range(3) %}{{ 'x' * 3 }}{% endfor %}", c, NULL, Q35_ERR_FORMAT, "Unknown operator");
    expect_fail("{% if messages|length > 3 %}{{ raise_exception('Too many messages') }}{% endif %}", c, NULL,
                Q35_ERR_ARG, "raise_exception: Too many messages");
    expect_fail("{% break %}", c, NULL, Q35_ERR_FORMAT, "outside a loop");

    /* bad conversations */
    expect_fail("x", "{\"messages\": [", NULL, Q35_ERR_FORMAT, "conversation");
    expect_fail("x", "[1, 2]", NULL, Q35_ERR_FORMAT, "not a JSON object");
    expect_fail("x", "{\"messages\": 5}", NULL, Q35_ERR_FORMAT, "\"messages\"");
    expect_fail("x", "{\"add_generation_prompt\": true}", NULL, Q35_ERR_FORMAT, "\"messages\"");
    expect_fail("x", "{\"messages\": [], \"range\": 1}", NULL, Q35_ERR_FORMAT, "Variable already declared: range");
    expect_fail("{{ messages[0].content.foo() }}", "{\"messages\": [{\"content\": \"a\"}]}", NULL, Q35_ERR_FORMAT,
                "not a function");
    expect_fail("x", "{\"messages\": [{\"content\": \"a\xff\xe2\x82z\"}]}", NULL, Q35_ERR_FORMAT, "not valid UTF-8");
    /* in a template, invalid UTF-8 reads as U+FFFD, as a JavaScript file read gives it */
    expect_render("a\xff\xe2\x82z|{{ 'a\xff\xe2\x82z'|length }}", c, "a\xef\xbf\xbd\xef\xbf\xbdz|4");
}

/* ---- templates from files ------------------------------------------------------------- */
static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static void expect_load(const char *path, const char *bos, const char *eos, const char *want) {
    q35_chat_template *t = NULL;
    q35_error err = {0};
    char *out = NULL;
    size_t n;
    CHECKF(q35_chat_template_load(&t, path, &err) == 0, "load %s: %s", path, err.msg);
    if (!t) return;
    CHECKF(!strcmp(q35_chat_template_bos(t), bos) && !strcmp(q35_chat_template_eos(t), eos),
           "%s: bos/eos %s %s, want %s %s", path, q35_chat_template_bos(t), q35_chat_template_eos(t), bos, eos);
    q35_chat_render(t, CONV1, strlen(CONV1), NULL, &out, &n, &err);
    CHECKF(out && !strcmp(out, want), "%s renders %s, want %s", path, out ? out : err.msg, want);
    free(out);
    q35_chat_template_free(t);
}

static void expect_no_load(const char *path, int code, const char *mention) {
    q35_chat_template *t = NULL;
    q35_error err = {0};
    CHECKF(q35_chat_template_load(&t, path, &err) == code && !t, "load %s: code %d, want %d", path, err.code, code);
    CHECKF(strstr(err.msg, mention) != NULL, "load %s: '%s' does not name '%s'", path, err.msg, mention);
}

static void test_load(void) {
    char dir[600], p[700];
    const char *tpl = "{{ bos_token }}{{ messages|length }}{{ eos_token }}";
    /* a folder's tokenizer_config.json: a string, and bos/eos as {content} */
    snprintf(dir, sizeof dir, "%s/hf1", tmpdir);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    write_file(p, "{\"chat_template\": \"{{ bos_token }}{{ messages|length }}{{ eos_token }}\", "
                  "\"bos_token\": {\"content\": \"<B>\", \"lstrip\": false}, \"eos_token\": \"<E>\"}");
    expect_load(dir, "<B>", "<E>", "<B>4<E>");
    expect_load(p, "<B>", "<E>", "<B>4<E>");
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    write_file(p, "{}");
    expect_load(p, "<B>", "<E>", "<B>4<E>");
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_file(p, "");
    expect_load(p, "<B>", "<E>", "<B>4<E>");
    /* a list of named templates: "default" */
    snprintf(p, sizeof p, "%s/list.json", tmpdir);
    write_file(p, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, "
                  "{\"name\": \"default\", \"template\": \"D{{ messages|length }}\"}], \"bos_token\": null}");
    expect_load(p, "", "", "D4");
    write_file(p, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}]}");
    expect_no_load(p, Q35_ERR_FORMAT, "\"default\"");
    write_file(p, "{\"chat_template\": 5}");
    expect_no_load(p, Q35_ERR_FORMAT, "neither a string nor a list");
    write_file(p, "{\"chat_template\": \"{% if %}\"}");
    expect_no_load(p, Q35_ERR_FORMAT, "list.json:1:");
    write_file(p, "not json");
    expect_no_load(p, Q35_ERR_FORMAT, "list.json");
    /* no template in the config, chat_template.jinja beside it */
    snprintf(dir, sizeof dir, "%s/hf2", tmpdir);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    write_file(p, "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}");
    expect_no_load(dir, Q35_ERR_UNSUPPORTED, "has no chat template");
    snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
    write_file(p, tpl);
    expect_load(dir, "<s>", "</s>", "<s>4</s>");
    expect_load(p, "<s>", "</s>", "<s>4</s>");
    expect_no_load("/nonexistent/x.gguf", Q35_ERR_IO, "no such file");

    /* GGUF: tokenizer.chat_template and the BOS/EOS pieces */
    q35_gguf_writer *w = NULL;
    q35_error err = {0};
    const char *toks[3] = {"<unk>", "<|bos|>", "<|eos|>"};
    uint64_t lens[3] = {5, 7, 7};
    snprintf(p, sizeof p, "%s/t.gguf", tmpdir);
    CHECK(q35_gguf_writer_new(&w, &err) == 0 && q35_gguf_writer_set_str(w, "general.architecture", "llama", &err) == 0 &&
          q35_gguf_writer_set_array(w, "tokenizer.ggml.tokens", Q35_GGUF_STRING, toks, lens, 3, &err) == 0 &&
          q35_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, &err) == 0 &&
          q35_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, &err) == 0 &&
          q35_gguf_writer_set_str(w, "tokenizer.chat_template", tpl, &err) == 0 &&
          q35_gguf_writer_write(w, p, &err) == 0);
    q35_gguf_writer_free(w);
    expect_load(p, "<|bos|>", "<|eos|>", "<|bos|>4<|eos|>");
    snprintf(p, sizeof p, "%s/none.gguf", tmpdir);
    CHECK(q35_gguf_writer_new(&w, &err) == 0 && q35_gguf_writer_set_str(w, "general.architecture", "llama", &err) == 0 &&
          q35_gguf_writer_write(w, p, &err) == 0);
    q35_gguf_writer_free(w);
    expect_no_load(p, Q35_ERR_UNSUPPORTED, "tokenizer.chat_template");
    char model[1024];
    expect_no_load(shared_path(model, sizeof model, "models/stories260K/stories260K.bin"), Q35_ERR_UNSUPPORTED,
                   "has no chat template");
}

/* the template's BOS/EOS strings in rendered text become the model's ids */
static void test_tokenize(void) {
    char model[1024];
    q35_model *m = NULL;
    q35_chat_template *t = NULL;
    q35_error err = {0};
    if (q35_model_load(&m, shared_path(model, sizeof model, "models/stories260K/stories260K.bin"), NULL, &err) ||
        q35_chat_template_named(&t, "chatml", &err)) {
        CHECKF(0, "stories260K: %s", err.msg);
        q35_model_free(m);
        return;
    }
    int bos = q35_token_bos(m), eos = q35_token_eos(m);
    int *a = NULL, *b = NULL, *c = NULL, na = 0, nb = 0, nc = 0;
    const char *text = "<s>Once upon</s> a time</s>";
    CHECK(q35_chat_tokenize(m, t, text, strlen(text), &a, &na, &err) == 0);
    CHECK(q35_tokenize(m, "Once upon", 9, 0, &b, &nb, &err) == 0 && q35_tokenize(m, " a time", 7, 0, &c, &nc, &err) == 0);
    int ok = na == nb + nc + 3 && a[0] == bos && a[1 + nb] == eos && a[na - 1] == eos;
    for (int i = 0; ok && i < nb; i++) ok = a[1 + i] == b[i];
    for (int i = 0; ok && i < nc; i++) ok = a[2 + nb + i] == c[i];
    CHECKF(ok, "q35_chat_tokenize: %d ids for BOS + %d + EOS + %d + EOS", na, nb, nc);
    free(a);
    /* BOS first even when the text does not begin with it */
    CHECK(q35_chat_tokenize(m, t, "Once upon", 9, &a, &na, &err) == 0 && na == nb + 1 && a[0] == bos && a[1] == b[0]);
    free(a);
    free(b);
    free(c);
    q35_chat_template_free(t);
    q35_model_free(m);
}

/* ---- against the oracle --------------------------------------------------------------- */
static const char *const SIX[] = {"llama3_2", "qwen2_5", "qwen3", "gemma3", "mistral_nemo"};

/* A GGUF's template as a tokenizer_config.json the oracle script reads. */
static int gguf_as_config(const char *gguf, const char *out, q35_chat_template **t) {
    q35_error err = {0};
    if (q35_chat_template_load(t, gguf, &err)) return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "chat_template", q35_chat_template_source(*t));
    cJSON_AddStringToObject(j, "bos_token", q35_chat_template_bos(*t));
    cJSON_AddStringToObject(j, "eos_token", q35_chat_template_eos(*t));
    char *s = cJSON_PrintUnformatted(j);
    write_file(out, s);
    free(s);
    cJSON_Delete(j);
    return 0;
}

static void test_oracle_real(void) {
    char **convs = NULL, **tools = NULL;
    int nc = read_lines(DATA "conversations.jsonl", &convs);
    char all[600];
    snprintf(all, sizeof all, "%s/tools_extra.jsonl", tmpdir);
    char *t1 = read_text(DATA "tools.jsonl"), *t2 = read_text(DATA "extra.jsonl");
    FILE *f = fopen(all, "wb");
    fprintf(f, "%s%s", t1 ? t1 : "", t2 ? t2 : "");
    fclose(f);
    free(t1);
    free(t2);
    int nt = read_lines(all, &tools);
    CHECKF(nc >= 10 && nt >= 8, "conversation files: %d and %d lines", nc, nt);
    char conv_path[PATH_MAX];
    if (!realpath(DATA "conversations.jsonl", conv_path)) return;
    for (int k = 0; k < 6; k++) {
        char cfg[PATH_MAX], name[64];
        q35_chat_template *t = NULL;
        q35_error err = {0};
        if (k < 5) {
            snprintf(cfg, sizeof cfg, "%s/tok/%s/tokenizer_config.json", oracles_dir(), SIX[k]);
            snprintf(name, sizeof name, "%s", SIX[k]);
            CHECKF(q35_chat_template_load(&t, cfg, &err) == 0, "%s: %s", cfg, err.msg);
        } else { /* Phi-3: inside llama.cpp's vocabulary GGUF, read by q35's GGUF reader */
            char gguf[PATH_MAX];
            snprintf(gguf, sizeof gguf, "%s/llama.cpp/models/ggml-vocab-phi-3.gguf", oracles_dir());
            snprintf(cfg, sizeof cfg, "%s/phi3_config.json", tmpdir);
            snprintf(name, sizeof name, "phi3 (GGUF)");
            CHECKF(gguf_as_config(gguf, cfg, &t) == 0, "%s: no template read", gguf);
        }
        char **orc = NULL, args[PATH_MAX + 4];
        snprintf(args, sizeof args, "'%s'", cfg);
        int no = oracle("jinja-render.mjs", args, DATA "conversations.jsonl", &orc);
        CHECKF(no == nc, "%s: the oracle gave %d lines for %d conversations", name, no, nc);
        int rendered = 0, both = 0, bad = no == nc ? compare(name, t, convs, nc, orc, 1, &rendered, &both, 1) : nc;
        CHECKF(bad == 0 && rendered == nc, "%s: %d of %d conversations differ from @huggingface/jinja", name, bad, nc);
        free_lines(orc, no > 0 ? no : 0);
        /* tools and further keys: the same answer, or both refuse */
        int r2 = 0, b2 = 0, bad2 = nt;
        no = oracle("multi", args, all, &orc);
        if (no == nt) bad2 = compare(name, t, tools, nt, orc, 0, &r2, &b2, 1);
        CHECKF(bad2 == 0, "%s: %d of %d tool conversations differ", name, bad2, nt);
        printf("template %-14s %2d conversations rendered, %d mismatches; with tools/extra keys %d rendered, "
               "%d refused by both, %d mismatches\n", name, rendered, bad, r2, b2, bad2);
        free_lines(orc, no > 0 ? no : 0);
        q35_chat_template_free(t);
    }
    free_lines(convs, nc);
    free_lines(tools, nt);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* every template in llama.cpp's models/templates and in its vocabulary GGUFs */
static void test_oracle_llamacpp(void) {
    char all[600];
    snprintf(all, sizeof all, "%s/all.jsonl", tmpdir);
    char *parts[3] = {read_text(DATA "conversations.jsonl"), read_text(DATA "tools.jsonl"), read_text(DATA "extra.jsonl")};
    FILE *f = fopen(all, "wb");
    for (int i = 0; i < 3; i++) {
        fputs(parts[i] ? parts[i] : "", f);
        free(parts[i]);
    }
    fclose(f);
    char **convs = NULL;
    int nc = read_lines(all, &convs);

    char dir[PATH_MAX], mdir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/llama.cpp/models/templates", oracles_dir());
    snprintf(mdir, sizeof mdir, "%s/llama.cpp/models", oracles_dir());
    char **files = NULL, **names = NULL;
    q35_chat_template **tpls = NULL;
    int n = 0, cap = 0;
    for (int pass = 0; pass < 2; pass++) {
        DIR *d = opendir(pass ? mdir : dir);
        struct dirent *e;
        char **found = NULL;
        int nf = 0;
        while (d && (e = readdir(d))) {
            size_t l = strlen(e->d_name);
            int want = pass ? (!strncmp(e->d_name, "ggml-vocab-", 11) && l > 5 && !strcmp(e->d_name + l - 5, ".gguf"))
                            : (l > 6 && !strcmp(e->d_name + l - 6, ".jinja"));
            if (want) {
                found = realloc(found, (size_t)(nf + 1) * sizeof *found);
                found[nf++] = strdup(e->d_name);
            }
        }
        if (d) closedir(d);
        qsort(found, (size_t)nf, sizeof *found, cmp_str);
        for (int i = 0; i < nf; i++) {
            char path[PATH_MAX * 2];
            snprintf(path, sizeof path, "%s/%s", pass ? mdir : dir, found[i]);
            q35_chat_template *t = NULL;
            q35_error err = {0};
            char *file = NULL;
            if (pass) { /* a vocabulary with a template: as a config for the oracle */
                char cfg[700];
                snprintf(cfg, sizeof cfg, "%s/%s.json", tmpdir, found[i]);
                if (gguf_as_config(path, cfg, &t) == 0) file = strdup(cfg);
            } else {
                q35_chat_template_named(&t, path, &err); /* may fail to parse: compared below */
                file = strdup(path);
            }
            if (file) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 64;
                    files = realloc(files, (size_t)cap * sizeof *files);
                    names = realloc(names, (size_t)cap * sizeof *names);
                    tpls = realloc(tpls, (size_t)cap * sizeof *tpls);
                }
                files[n] = file;
                names[n] = strdup(found[i]);
                tpls[n] = t;
                n++;
            }
            free(found[i]);
        }
        free(found);
    }
    CHECKF(n >= 60, "llama.cpp: %d templates found", n);
    size_t alen = 16;
    for (int i = 0; i < n; i++) alen += strlen(files[i]) + 3;
    char *args = malloc(alen), *w = args;
    *w = '\0';
    for (int i = 0; i < n; i++) w += sprintf(w, " '%s'", files[i]);
    char **orc = NULL;
    int no = oracle("multi", args, all, &orc);
    CHECKF(no == n * nc, "llama.cpp: the oracle gave %d lines for %d x %d", no, n, nc);
    int exact = 0, none = 0, total_r = 0, total_bad = 0;
    for (int i = 0; no == n * nc && i < n; i++) {
        int rendered = 0, both = 0;
        int bad = compare(names[i], tpls[i], convs, nc, orc + i * nc, 0, &rendered, &both, 1);
        CHECKF(bad == 0, "%s: %d of %d conversations differ from @huggingface/jinja", names[i], bad, nc);
        exact += bad == 0 && rendered > 0;
        none += rendered == 0;
        total_r += rendered;
        total_bad += bad;
        printf("llama.cpp %-52s %2d rendered, %2d refused by both, %d mismatches\n", names[i], rendered, both, bad);
    }
    printf("llama.cpp templates: %d of %d render exactly on every conversation the oracle renders (%d renderings, "
           "%d mismatches); %d are refused by the oracle on all %d conversations\n",
           exact, n, total_r, total_bad, none, nc);
    free_lines(orc, no > 0 ? no : 0);
    for (int i = 0; i < n; i++) {
        free(files[i]);
        free(names[i]);
        q35_chat_template_free(tpls[i]);
    }
    free(files);
    free(names);
    free(tpls);
    free(args);
    free_lines(convs, nc);
}

/* tests/data/chat/cases.jsonl: one feature or quirk each, through the interpreter itself */
static void test_oracle_cases(void) {
    char **cases = NULL, **orc = NULL;
    int nc = read_lines(DATA "cases.jsonl", &cases);
    int no = oracle("cases", "--cases", DATA "cases.jsonl", &orc);
    CHECKF(nc > 300 && no == nc, "cases: %d, oracle lines %d", nc, no);
    int same = 0, known = 0, bad = 0;
    for (int i = 0; no == nc && i < nc; i++) {
        cJSON *c = cJSON_Parse(cases[i]);
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(c, "template");
        const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(c, "context");
        const cJSON *differs = cJSON_GetObjectItemCaseSensitive(c, "differs");
        jinja_template *t = NULL;
        q35_error err = {0};
        char *out = NULL;
        size_t len = 0;
        if (jinja_parse(&t, src->valuestring, strlen(src->valuestring), "case", &err) == 0)
            jinja_render(t, ctx, NULL, &out, &len, &err);
        jinja_free(t);
        char *want = oracle_text(orc[i], 0);
        int ok = (!want && !out) || (want && out && !strcmp(want, out));
        if (differs) known++;
        else if (ok) same++;
        else {
            bad++;
            fprintf(stderr, "  case %d %.100s\n    q35:    %.200s\n    oracle: %.200s\n", i + 1, src->valuestring,
                    out ? out : err.msg, orc[i]);
        }
        free(out);
        free(want);
        cJSON_Delete(c);
    }
    CHECKF(bad == 0, "cases: %d of %d differ from @huggingface/jinja", bad, nc);
    printf("cases: %d of %d as @huggingface/jinja (output, or both refuse); %d known differences\n", same, nc, known);
    free_lines(cases, nc);
    free_lines(orc, no > 0 ? no : 0);
}

/* ---- the commands ---------------------------------------------------------------------- */
static int parse_turn(const char *err, int turn, int *prompt, int *reused, int *evaluated, int *generated, int *cache) {
    char key[32];
    snprintf(key, sizeof key, "turn %d: ", turn);
    const char *p = strstr(err, key);
    return p && sscanf(p + strlen(key), "prompt %d tokens, %d reused from the cache, %d evaluated; %d generated; %d in",
                       prompt, reused, evaluated, generated, cache) == 5 ? 0 : -1;
}

static void test_commands(void) {
    char model[1024], conv[PATH_MAX];
    shared_path(model, sizeof model, "models/stories260K/stories260K.bin");
    if (!realpath(DATA "conversations.jsonl", conv)) return;
    const char *simple = fix("simple.jinja", "{% for m in messages %}{{ m.role }}:{{ m.content }}\n{% endfor %}"
                                                 "{% if add_generation_prompt %}assistant:{% endif %}");

    /* chat-template: one JSON string per line, as the oracle script prints them */
    result r = run_in((const char *[]){"chat-template", "--template", "chatml", NULL}, conv);
    CHECKF(r.status == 0, "chat-template: %s", r.err);
    int lines = 0;
    for (const char *p = r.out; *p; p++) lines += *p == '\n';
    const char *first = "\"<|im_start|>user\\nHello!<|im_end|>\\n<|im_start|>assistant\\n\"\n";
    CHECKF(lines == 13 && !strncmp(r.out, first, strlen(first)), "chat-template output: %.200s", r.out);
    if (oracles_dir() && have_node()) {
        char cfg[PATH_MAX], **orc = NULL, args[PATH_MAX + 4];
        snprintf(cfg, sizeof cfg, "%s/tok/qwen3/tokenizer_config.json", oracles_dir());
        snprintf(args, sizeof args, "'%s'", cfg);
        int no = oracle("jinja-render.mjs", args, conv, &orc);
        free_result(&r);
        r = run_in((const char *[]){"chat-template", "--tokenizer", cfg, NULL}, conv);
        size_t want_len = 0;
        for (int i = 0; i < no; i++) want_len += strlen(orc[i]) + 1;
        char *want = calloc(want_len + 1, 1);
        for (int i = 0; i < no; i++) strcat(strcat(want, orc[i]), "\n");
        CHECKF(no == 13 && r.status == 0 && !strcmp(r.out, want), "chat-template --tokenizer qwen3: output is not the "
               "oracle's byte for byte");
        free(want);
        free_lines(orc, no > 0 ? no : 0);
    } else SKIP("no oracles or no node: chat-template output not compared byte for byte");
    free_result(&r);

    /* bad input: one line, exit 1 */
    const char *bad_tpl = fix("bad.jinja", "ok\n{% for x in y %}\n{{ x }\n");
    const char *loop_tpl = fix("loop.jinja", "{% for i in range(100000) %}{% for j in range(100000) %}"
                                                 "{% endfor %}{% endfor %}");
    const char *rec_tpl = fix("rec.jinja", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}");
    const char *bad_json = fix("bad.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n{\"messages\": ");
    const char *no_msgs = fix("nomsgs.jsonl", "{\"add_generation_prompt\": true}\n");
    const char *empty = fix("empty.txt", "");
    expect_error_in("chat-template, a template that does not parse", "bad.jinja:3:",
                    (const char *[]){"chat-template", "--template", bad_tpl, NULL}, conv);
    expect_error_in("chat-template, a template that loops", "(the limit)",
                    (const char *[]){"chat-template", "--template", loop_tpl, NULL}, conv);
    expect_error_in("chat-template, a template that recurses", "nest deeper than 100",
                    (const char *[]){"chat-template", "--template", rec_tpl, NULL}, conv);
    expect_error_in("chat-template, bad JSON", "stdin line 2",
                    (const char *[]){"chat-template", "--template", "chatml", NULL}, bad_json);
    expect_error_in("chat-template, no messages", "\"messages\"",
                    (const char *[]){"chat-template", "--template", "chatml", NULL}, no_msgs);
    expect_error_in("chat-template, nothing on stdin", "no conversations",
                    (const char *[]){"chat-template", "--template", "chatml", NULL}, empty);
    expect_error_in("chat-template, a file without a template", "--chat-template NAME|FILE",
                    (const char *[]){"chat-template", "--tokenizer", model, NULL}, conv);
    expect_error_in("chat-template, an unknown name", "neither a built-in name",
                    (const char *[]){"chat-template", "--template", "nosuch", NULL}, conv);
    expect_error("chat-template, no template at all", "--tokenizer", (const char *[]){"chat-template", NULL});
    expect_error("run --chat without a template", "--chat-template NAME|FILE",
                 (const char *[]){"run", "-m", model, "--chat", NULL});
    expect_error("run --system without --chat", "needs --chat", (const char *[]){"run", "-m", model, "--system", "x", NULL});
    expect_error("run --chat with a template that loops", "(the limit)",
                 (const char *[]){"run", "-m", model, "--chat", "--chat-template", loop_tpl, NULL});
    expect_error_in("chat with a template that does not parse", "bad.jinja:3:",
                    (const char *[]){"chat", "-m", model, "--chat-template", bad_tpl, NULL}, conv);
    expect_error_in("chat with nothing on stdin", "no turns",
                    (const char *[]){"chat", "-m", model, "--chat-template", simple, NULL}, empty);

    /* run --chat: the prompt formatted as a user's turn; the reply ends at the end of turn */
    r = run((const char *[]){"run", "-m", model, "--chat", "--chat-template", simple, "-p", "Once upon a time",
                             "--temp", "0", "-n", "20", NULL});
    CHECKF(r.status == 0 && strlen(r.out) > 2 && strstr(r.err, "prompt: 20 tokens"), "run --chat: %s %s", r.out, r.err);
    free_result(&r);

    /* chat: three turns through stdin, the cache kept; the same replies as without it */
    const char *turns = fix("turns.txt", "Once upon a time\nThe dog ran\n\nThen what?\n");
    const char *args[] = {"chat", "-m", model, "--chat-template", simple, "--temp", "0", "-n", "20", "-t", "1", NULL, NULL};
    result a = run_in(args, turns);
    args[11] = "--no-cache-reuse";
    result b = run_in(args, turns);
    CHECKF(a.status == 0 && b.status == 0, "chat: %s / %s", a.err, b.err);
    CHECKF(!strcmp(a.out, b.out), "replies with the cache kept differ from those without:\n%s\n%s", a.out, b.out);
    int last_cache = 0;
    for (int t = 1; t <= 3; t++) {
        int p, reused, ev, gen, cache, p2, reused2, ev2, gen2, cache2;
        int ok = parse_turn(a.err, t, &p, &reused, &ev, &gen, &cache) == 0 &&
                 parse_turn(b.err, t, &p2, &reused2, &ev2, &gen2, &cache2) == 0;
        CHECKF(ok, "chat: no line for turn %d in %s", t, a.err);
        if (!ok) break;
        CHECKF(reused + ev == p && cache > last_cache && gen > 0, "turn %d: %d + %d != %d or the cache did not grow", t,
               reused, ev, p);
        /* every token of the earlier turns is reused, none evaluated again */
        CHECKF(reused == (t == 1 ? 0 : last_cache), "turn %d: %d tokens reused, the cache held %d", t, reused, last_cache);
        CHECKF(reused2 == 0 && ev2 == p2 && p2 == p, "turn %d without reuse: %d reused, %d evaluated of %d", t, reused2,
               ev2, p2);
        last_cache = cache;
    }
    free_result(&a);
    free_result(&b);
}

int main(void) {
    if (clirun_init("chat")) return 1;
    test_semantics();
    test_builtins();
    test_bad_input();
    test_load();
    test_tokenize();
    if (oracles_dir() && have_node()) {
        test_oracle_real();
        test_oracle_llamacpp();
        test_oracle_cases();
    } else SKIP("no oracles (%s) or no node: templates not compared with @huggingface/jinja",
                oracles_dir() ? "found" : "run ../shared/oracles/setup.sh");
    test_commands();
    clirun_cleanup();
    TEST_END();
}
