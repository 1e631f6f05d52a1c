/* chat.c — conversations into prompts (chat.h). */
#include "server/chat.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* {"messages": [{"role": ..., "content": ...}, ...], "add_generation_prompt": true} */
static char *conversation(const srv_msg *msgs, int n) {
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "messages");
    int ok = list && cJSON_AddTrueToObject(o, "add_generation_prompt");
    for (int i = 0; ok && i < n; i++) {
        cJSON *msg = cJSON_CreateObject();
        if (!msg || !cJSON_AddItemToArray(list, msg)) {
            cJSON_Delete(msg);
            ok = 0;
            break;
        }
        ok = cJSON_AddStringToObject(msg, "role", msgs[i].role) &&
             cJSON_AddStringToObject(msg, "content", msgs[i].content);
    }
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

int srv_chat_tokens(const q35_model *m, const q35_chat_template *t, const srv_msg *msgs, int n, int **ids,
                    int *n_ids, q35_error *err) {
    char *conv = conversation(msgs, n), *text = NULL;
    size_t len = 0;
    if (!conv) {
        if (err) {
            err->code = Q35_ERR_NOMEM;
            snprintf(err->msg, sizeof err->msg, "out of memory");
        }
        return Q35_ERR_NOMEM;
    }
    int rc = q35_chat_render(t, conv, strlen(conv), NULL, &text, &len, err);
    if (!rc) rc = q35_chat_tokenize(m, t, text, len, ids, n_ids, err);
    free(conv);
    free(text);
    return rc;
}
