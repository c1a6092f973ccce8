"""SFT data for the student guard: which examples, in which mode, as which token sequences.

One module per step, all pure (no Ray, no torch; a tokenizer is passed in):

* `select`: traces and/or labelled examples -> items; a seeded label-stratified subset; the mode mix
  (reasoning-only, no-reasoning, or dual-mode with a ratio).
* `rows`: items -> SFT rows (one chat each) with a reasoning budget (full / N sentences) and an
  optional topic-following (custom policy) mix; `build_sft_rows` is the whole build.
* `encode`: an SFT row -> input ids and labels; loss only on the assistant turn; verdict-safe truncation.
* `packing`: encoded examples -> fixed-length packed sequences.
* `files`: reading traces and rows, writing rows, and the stage's build from its config.
"""

from reasonguard.sft.encode import (IGNORE_INDEX, TRUNCATION_MARK, EncodedChat, EncodedExample, encode_chat,
                                    encode_rows, encode_sft_row, shrink_text)
from reasonguard.sft.files import build_from_config, read_rows, write_rows
from reasonguard.sft.packing import PackedSequence, pack_sequences
from reasonguard.sft.rows import SftBuildResult, build_sft_rows, example_of_row, messages_of_row, sft_row
from reasonguard.sft.select import (Budget, SourceItem, assign_modes, items_from_examples, items_from_traces,
                                    label_key, reasoning_column, stratified_subset)

__all__ = [
    "IGNORE_INDEX", "TRUNCATION_MARK", "Budget", "EncodedChat", "EncodedExample", "PackedSequence", "SftBuildResult",
    "SourceItem", "assign_modes", "build_from_config", "build_sft_rows", "encode_chat", "encode_rows",
    "encode_sft_row", "example_of_row", "items_from_examples", "items_from_traces", "label_key", "messages_of_row",
    "pack_sequences", "read_rows", "reasoning_column", "shrink_text", "sft_row", "stratified_subset", "write_rows",
]
