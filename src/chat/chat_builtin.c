/* chat_builtin.c — the templates --chat-template NAME chooses, for models
 * whose files carry none. chatml, llama3 and gemma are short templates
 * written for q35 that produce those formats (the Llama and Gemma
 * templates themselves come under their models' licences, so they are not
 * copied here); mistral is Mistral-Nemo-Instruct-2407's template (Apache
 * 2.0) and phi3 Phi-3-mini's (MIT), as their models ship them (the latter
 * from llama.cpp's models/ggml-vocab-phi-3.gguf). test_chat renders each
 * against the real template it stands for. */
#include <string.h>

#include "chat/chat.h"

static const char CHATML[] =
     "{%- for message in messages %}\n"
     "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\n"
     "{%- endfor %}\n"
     "{%- if add_generation_prompt %}\n"
     "{{- '<|im_start|>assistant\\n' }}\n"
     "{%- endif %}";

static const char LLAMA3[] =
     "{{- bos_token }}\n"
     "{%- for message in messages %}\n"
     "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}\n"
     "{%- endfor %}\n"
     "{%- if add_generation_prompt %}\n"
     "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
     "{%- endif %}";

static const char GEMMA[] =
     "{{- bos_token }}\n"
     "{%- set ns = namespace(prefix='') %}\n"
     "{%- for message in messages %}\n"
     "{%- if message['role'] == 'system' %}\n"
     "{%- set ns.prefix = message['content'] + '\\n\\n' %}\n"
     "{%- else %}\n"
     "{{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' + ns.prefix + message['content'] | trim + '<end_of_turn>\\n' }}\n"
     "{%- set ns.prefix = '' %}\n"
     "{%- endif %}\n"
     "{%- endfor %}\n"
     "{%- if add_generation_prompt %}\n"
     "{{- '<start_of_turn>model\\n' }}\n"
     "{%- endif %}";

/* Mistral-Nemo-Instruct-2407 (Apache 2.0) */
static const char MISTRAL[] =
     "{%- if messages[0][\"role\"] == \"system\" %}\n"
     "    {%- set system_message = messages[0][\"content\"] %}\n"
     "    {%- set loop_messages = messages[1:] %}\n"
     "{%- else %}\n"
     "    {%- set loop_messages = messages %}\n"
     "{%- endif %}\n"
     "{%- if not tools is defined %}\n"
     "    {%- set tools = none %}\n"
     "{%- endif %}\n"
     "{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n"
     "\n"
     "{%- for message in loop_messages | rejectattr(\"role\", \"equalto\", \"tool\") | rejectattr(\"role\", \"equalto\", \"tool_results\") | selectattr(\"tool_calls\", \"undefined\") %}\n"
     "    {%- if (message[\"role\"] == \"user\") != (loop.index0 % 2 == 0) %}\n"
     "        {{- raise_exception(\"After the optional system message, conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
     "    {%- endif %}\n"
     "{%- endfor %}\n"
     "\n"
     "{{- bos_token }}\n"
     "{%- for message in loop_messages %}\n"
     "    {%- if message[\"role\"] == \"user\" %}\n"
     "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
     "            {{- \"[AVAILABLE_TOOLS][\" }}\n"
     "            {%- for tool in tools %}\n"
     "        {%- set tool = tool.function %}\n"
     "        {{- '{\"type\": \"function\", \"function\": {' }}\n"
     "        {%- for key, val in tool.items() if key != \"return\" %}\n"
     "            {%- if val is string %}\n"
     "            {{- '\"' + key + '\": \"' + val + '\"' }}\n"
     "            {%- else %}\n"
     "            {{- '\"' + key + '\": ' + val|tojson }}\n"
     "            {%- endif %}\n"
     "            {%- if not loop.last %}\n"
     "            {{- \", \" }}\n"
     "            {%- endif %}\n"
     "        {%- endfor %}\n"
     "        {{- \"}}\" }}\n"
     "                {%- if not loop.last %}\n"
     "                    {{- \", \" }}\n"
     "                {%- else %}\n"
     "                    {{- \"]\" }}\n"
     "                {%- endif %}\n"
     "            {%- endfor %}\n"
     "            {{- \"[/AVAILABLE_TOOLS]\" }}\n"
     "            {%- endif %}\n"
     "        {%- if loop.last and system_message is defined %}\n"
     "            {{- \"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
     "        {%- else %}\n"
     "            {{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}\n"
     "        {%- endif %}\n"
     "    {%- elif message[\"role\"] == \"tool_calls\" or message.tool_calls is defined %}\n"
     "        {%- if message.tool_calls is defined %}\n"
     "            {%- set tool_calls = message.tool_calls %}\n"
     "        {%- else %}\n"
     "            {%- set tool_calls = message.content %}\n"
     "        {%- endif %}\n"
     "        {{- \"[TOOL_CALLS][\" }}\n"
     "        {%- for tool_call in tool_calls %}\n"
     "            {%- set out = tool_call.function|tojson %}\n"
     "            {{- out[:-1] }}\n"
     "            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n"
     "                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n"
     "            {%- endif %}\n"
     "            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n"
     "            {%- if not loop.last %}\n"
     "                {{- \", \" }}\n"
     "            {%- else %}\n"
     "                {{- \"]\" + eos_token }}\n"
     "            {%- endif %}\n"
     "        {%- endfor %}\n"
     "    {%- elif message[\"role\"] == \"assistant\" %}\n"
     "        {{- message[\"content\"] + eos_token}}\n"
     "    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n"
     "        {%- if message.content is defined and message.content.content is defined %}\n"
     "            {%- set content = message.content.content %}\n"
     "        {%- else %}\n"
     "            {%- set content = message.content %}\n"
     "        {%- endif %}\n"
     "        {{- '[TOOL_RESULTS]{\"content\": ' + content|string + \", \" }}\n"
     "        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n"
     "            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n"
     "        {%- endif %}\n"
     "        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n"
     "    {%- else %}\n"
     "        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an initial optional system message!\") }}\n"
     "    {%- endif %}\n"
     "{%- endfor %}\n";

/* Phi-3-mini-4k-instruct (MIT) */
static const char PHI3[] =
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n"
     "' + message['content'] + '<|end|>' + '\n"
     "' + '<|assistant|>' + '\n"
     "'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n"
     "'}}{% endif %}{% endfor %}";

static const struct {
    const char *name;
    const char *source;
} BUILTIN[] = {
    {"chatml", CHATML}, {"llama3", LLAMA3}, {"gemma", GEMMA}, {"mistral", MISTRAL}, {"phi3", PHI3},
};

const char *q35_chat_builtin_source(const char *name) {
    for (size_t i = 0; i < sizeof BUILTIN / sizeof BUILTIN[0]; i++)
        if (strcmp(name, BUILTIN[i].name) == 0) return BUILTIN[i].source;
    return NULL;
}

const char *q35_chat_builtin_names(void) { return "chatml, llama3, gemma, mistral, phi3"; }
