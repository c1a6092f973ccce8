"""The verdict vocabulary of a checkpoint (its tokenizer and end ids), for the verdict constraint
and for reading P(harmful) back out of generated ids. transformers is imported on call."""

from __future__ import annotations

from functools import lru_cache

from reasonguard.decoding import VerdictVocabulary


def load_vocabulary(model_or_tokenizer: str) -> VerdictVocabulary:
    """From a checkpoint folder (or hub id): its tokenizer, plus the generation config's eos ids."""
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
