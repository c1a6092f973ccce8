"""The verdict vocabulary of a checkpoint (its tokenizer and end ids), for the verdict constraint
and for reading P(harmful) back out of generated ids.

Every place that needs it (the vLLM logits processor, the engines, the Ray Data postprocess)
loads it the same way, so they step through the same states. With a `tokenizer.json` (every
fast tokenizer has one) it comes from the `tokenizers` library, which loads in a tenth of a
second; importing transformers takes ~7 s on 2 cores, paid by every Ray task worker of a
postprocess. transformers is the fallback for checkpoints without one (and for hub ids).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from reasonguard.decoding import VerdictVocabulary


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _generation_eos(folder: Path) -> list[int]:
    eos = _json(folder / "generation_config.json").get("eos_token_id")
    return list(eos) if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []


def load_vocabulary(model_or_tokenizer: str) -> VerdictVocabulary:
    """From a checkpoint folder (or hub id): its tokenizer, plus the generation config's eos ids."""
    folder = Path(model_or_tokenizer)
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        eos = _json(folder / "tokenizer_config.json").get("eos_token")
        eos = eos.get("content") if isinstance(eos, dict) else eos
        eos_id = tok.token_to_id(eos) if eos else None
        if eos_id is not None:
            return VerdictVocabulary(
                encode=lambda text: tok.encode(text, add_special_tokens=False).ids,
                decode_one=lambda token: tok.decode([token], skip_special_tokens=False),
                eos_id=eos_id,
                stop_ids=_generation_eos(folder),
                vocab_size=tok.get_vocab_size(with_added_tokens=True),
            )
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(model_or_tokenizer)
    extra: list[int] = []
    try:
        eos = GenerationConfig.from_pretrained(model_or_tokenizer).eos_token_id
        extra = list(eos) if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
    except OSError:  # no generation_config.json
        pass
    return VerdictVocabulary.from_tokenizer(tokenizer, extra_stop_ids=extra)


@lru_cache(maxsize=4)
def cached_vocabulary(model_or_tokenizer: str) -> VerdictVocabulary:
    """One vocabulary per checkpoint and process (Ray Data postprocess runs once per row)."""
    return load_vocabulary(model_or_tokenizer)
