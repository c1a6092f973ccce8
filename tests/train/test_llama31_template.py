"""Label masking in a Llama-3.1-format chat template, beside SmolLM2's (tests/test_sft.py) and Gemma-3's
(test_gemma3_student.py). Llama 3.1's template differs where masking can go wrong: it always opens
with a system block carrying knowledge and today's dates (even without a system message), a header
pair per turn, `<|eot_id|>` ending each turn, no newline after it, and trimmed contents.

No Llama tokenizer is reachable offline: SmolLM2's vocabulary with Llama 3's special tokens and a
template that renders Llama 3.1's format for conversations without tools (written out below).
"""

from __future__ import annotations

import pytest

from .conftest import assert_rows_learn_their_targets, guard_sft_chat

IGNORE = -100
LLAMA31_FORMAT = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def llama_tokenizer():
    from transformers import AutoTokenizer

    from reasonguard.models import prepare_smollm2

    tok = AutoTokenizer.from_pretrained(str(prepare_smollm2()))
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
    tok.add_tokens(["<|start_header_id|>", "<|end_header_id|>"], special_tokens=True)
    tok.chat_template = LLAMA31_FORMAT
    return tok


@pytest.mark.parametrize("mode", ["think", "no_think"])
def test_guard_chat_in_llama31_format_learns_exactly_the_target_and_eot(llama_tokenizer, mode):
    from reasonguard.sft.encode import encode_chat

    tok = llama_tokenizer
    chat = guard_sft_chat(mode)
    user, target = chat[0]["content"], chat[1]["content"]
    enc = encode_chat(tok, chat)
    bos, eot, header = tok.convert_tokens_to_ids(["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>"])
    # Written out: BOS, the dated system block (masked like the rest of the prompt), the user turn, the
    # assistant header; then the target and <|eot_id|>, nothing after it.
    assert tok.decode(enc.prompt) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        f"Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{user.strip()}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert enc.input_ids.count(bos) == 1 and enc.input_ids.count(header) == 3
    assert enc.target == tok(target, add_special_tokens=False).input_ids
    assert enc.end == [eot] and enc.tail == []
    n = len(enc.prompt)
    assert enc.labels == [IGNORE] * n + enc.target + [eot]
    assert tok.decode([t for t in enc.labels if t != IGNORE]) == target + "<|eot_id|>"
    assert mode != "think" or target.startswith("<think>\n")


def test_sft_rows_encode_in_llama31_format(llama_tokenizer, sft_path):
    assert_rows_learn_their_targets(llama_tokenizer, sft_path, "<|eot_id|>")
