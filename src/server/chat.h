/* chat.h — a conversation (request.h's messages) into prompt tokens: the
 * one place the server formats chats.
 *
 * Until the library renders the model's own chat template (the chat
 * template work, issue 16), every model gets a fallback transcript:
 * system/developer messages as plain paragraphs, then "User: ...",
 * "Assistant: ..." lines (other roles by their name), ending with
 * "Assistant:" for the reply; BOS first. */
#ifndef Q35_SERVER_CHAT_H
#define Q35_SERVER_CHAT_H

#include "q35.h"
#include "server/request.h"

typedef struct srv_chat srv_chat;

/* The chat formatter for model m (loaded from model_path). */
int srv_chat_new(srv_chat **out, const q35_model *m, const char *model_path, q35_error *err);
void srv_chat_free(srv_chat *c);
/* How chats are formatted, for the start-up line ("fallback transcript"). */
const char *srv_chat_describe(const srv_chat *c);
/* The prompt of n messages as token ids (*ids malloc'ed). */
int srv_chat_tokens(const srv_chat *c, const srv_msg *msgs, int n, int **ids, int *n_ids, q35_error *err);

#endif
