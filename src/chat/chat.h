/* chat.h — chat templates behind the public q35_chat_* calls (q35.h):
 * a parsed Jinja template with the BOS/EOS strings it renders with,
 * read from a model or tokenizer file or chosen by name, and the built-in
 * templates (chat_builtin.c). */
#ifndef Q35_CHAT_CHAT_H
#define Q35_CHAT_CHAT_H

#include "chat/jinja.h"
#include "q35.h"

struct q35_chat_template {
    jinja_template *tpl;
    char *source;      /* NUL-terminated */
    char *bos, *eos;   /* the strings bos_token / eos_token render as */
};

/* The built-in template called name, or NULL. */
const char *q35_chat_builtin_source(const char *name);
/* Their names, comma-separated. */
const char *q35_chat_builtin_names(void);

#endif
