/* chat.h — a conversation (request.h's messages) into prompt tokens with
 * the library's chat templates (q35_chat_render, q35_chat_tokenize): the
 * template the program chose (the model's own, --chat-template, or a
 * built-in one for a model without any), the messages as its
 * `messages`, add_generation_prompt true. */
#ifndef Q35_SERVER_CHAT_H
#define Q35_SERVER_CHAT_H

#include "q35.h"
#include "server/request.h"

/* The prompt of n messages as token ids (*ids malloc'ed); a template that
 * refuses the conversation (raise_exception) fails with its message. */
int srv_chat_tokens(const q35_model *m, const q35_chat_template *t, const srv_msg *msgs, int n, int **ids,
                    int *n_ids, q35_error *err);

#endif
