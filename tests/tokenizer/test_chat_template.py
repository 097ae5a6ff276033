"""Chat templates rendered by hearth against transformers' apply_chat_template: the SmolLM2
file's own template, templates that use the HF helpers (tojson, raise_exception,
strftime_now, loop controls, generation blocks, tools), and the errors."""

from __future__ import annotations

import datetime

import pytest

from hearth.errors import UserInputError
from hearth.tokenizer import ChatTemplate, Tokenizer

SYSTEM = {"role": "system", "content": "You are terse. Answer in French — s'il vous plaît."}
USER = {"role": "user", "content": "What is the capital of France? 🇫🇷"}
ASSISTANT = {"role": "assistant", "content": "Paris.\n\nAnything else?"}
USER2 = {"role": "user", "content": "And of 日本?  <|im_end|> is just text here"}

CONVERSATIONS = [
    [USER],
    [SYSTEM, USER],
    [USER, ASSISTANT],
    [SYSTEM, USER, ASSISTANT],
    [SYSTEM, USER, ASSISTANT, USER2],
    [USER, ASSISTANT, USER2, ASSISTANT, USER],
]

# A Gemma-style template (system folded into the first user turn, strict alternation) and a
# Llama-3.1-style one with tools rendered through tojson.
GEMMA_STYLE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"""

TOOLS_STYLE = """{{- bos_token }}
{%- if tools %}
<|start_header_id|>system<|end_header_id|>
Today is {{ strftime_now("%d %b %Y") }}. Tools:
{% for t in tools %}
{{ t | tojson(indent=4) }}
{% endfor %}
<|eot_id|>
{%- endif %}
{%- for message in messages %}
    {%- if loop.index > 4 %}{% break %}{% endif %}
    {%- if message.role == 'system' %}{% continue %}{% endif %}
<|start_header_id|>{{ message.role }}<|end_header_id|>

{% generation %}{{ message.content | trim }}{% endgeneration %}<|eot_id|>
{%- endfor %}
{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>

{% endif %}"""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Météo pour une ville — returns °C",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "e.g. Zürich"}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize("generation_prompt", [True, False])
def test_smollm2_template_matches_transformers(
    smollm2_tokenizer: Tokenizer, hf_smollm2_tokenizer, generation_prompt: bool
) -> None:  # type: ignore[no-untyped-def]
    assert smollm2_tokenizer.has_chat_template
    for messages in CONVERSATIONS:
        ours = smollm2_tokenizer.apply_chat_template(
            messages, add_generation_prompt=generation_prompt
        )
        theirs = hf_smollm2_tokenizer.apply_chat_template(
            messages, add_generation_prompt=generation_prompt, tokenize=False
        )
        assert ours == theirs
        assert ours.endswith("<|im_start|>assistant\n") == generation_prompt
        # the ids too: the template's special tokens become their ids, no BOS added twice
        assert smollm2_tokenizer.encode_chat(
            messages, generation_prompt
        ) == hf_smollm2_tokenizer.encode(theirs, add_special_tokens=False)


@pytest.mark.parametrize("template", [GEMMA_STYLE, TOOLS_STYLE], ids=["gemma-style", "tools"])
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_helper_templates_match_transformers(
    hf_smollm2_tokenizer, template: str, generation_prompt: bool
) -> None:  # type: ignore[no-untyped-def]
    ours = ChatTemplate(template)
    for messages in (
        [USER],
        [SYSTEM, USER],
        [SYSTEM, USER, ASSISTANT, USER2],
        [USER, ASSISTANT] * 3,
    ):
        for tools in (None, [WEATHER_TOOL]):
            theirs = hf_smollm2_tokenizer.apply_chat_template(
                messages,
                chat_template=template,
                tools=tools,
                add_generation_prompt=generation_prompt,
                tokenize=False,
            )
            rendered = ours.render(
                messages,
                add_generation_prompt=generation_prompt,
                tools=tools,
                bos_token="<|im_start|>",
                eos_token="<|im_end|>",
            )
            assert rendered == theirs
    with_tools = ours.render([USER], tools=[WEATHER_TOOL], bos_token="")
    if template is TOOLS_STYLE:
        assert '"description": "Météo pour une ville — returns °C"' in with_tools  # not \\u-escaped
        assert datetime.date.today().strftime("%d %b %Y") in with_tools


def test_reasoning_is_passed_under_the_names_templates_read(hf_smollm2_tokenizer) -> None:  # type: ignore[no-untyped-def]
    template = "{% for m in messages %}[{{ m.reasoning_content }}|{{ m.thinking }}]{{ m.content }}{% endfor %}"
    messages = [USER, {"role": "assistant", "content": "Paris.", "reasoning": "France → Paris"}]
    rendered = ChatTemplate(template).render(messages)
    assert rendered == hf_smollm2_tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False
    )
    assert "[France → Paris|France → Paris]Paris." in rendered
    assert "reasoning_content" not in messages[1]  # the caller's messages are not modified


def test_template_errors_become_user_input_errors() -> None:
    alternating = ChatTemplate(GEMMA_STYLE)
    with pytest.raises(UserInputError, match="roles must alternate"):
        alternating.render([USER, USER], bos_token="<bos>")
    with pytest.raises(UserInputError, match="not valid Jinja"):
        ChatTemplate("{% for m in messages %}{{ m.content }")
    # the sandbox refuses to reach Python internals from a template
    with pytest.raises(UserInputError, match="rejected"):
        ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}").render([USER])
    # the immutable sandbox refuses to modify the caller's data
    with pytest.raises(UserInputError):
        ChatTemplate("{{ messages.append(1) }}").render([USER])
    with pytest.raises(UserInputError, match="failed on this conversation"):
        ChatTemplate("{{ messages[0]['content'] + 1 }}").render([USER])


def test_model_without_template_says_to_use_completion(gemma3_tokenizer: Tokenizer) -> None:
    assert not gemma3_tokenizer.has_chat_template and gemma3_tokenizer.chat_template is None
    with pytest.raises(UserInputError, match="no chat template") as info:
        gemma3_tokenizer.apply_chat_template([USER])
    assert "--raw" in str(info.value) and "/v1/completions" in str(info.value)
    with pytest.raises(UserInputError, match="no chat template"):
        gemma3_tokenizer.encode_chat([USER])
