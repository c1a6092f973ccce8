"""Checkpoints in Hugging Face format plus the state needed to resume exactly.

A training checkpoint folder holds:
  hf/                   the model (or LoRA adapter) + tokenizer: loadable by transformers and vLLM
  engine/               optimizer and scheduler state (DeepSpeed shards, or torch state on rank 0)
  trainer_state.json    epoch, step, loss history (written by rank 0)
Under Ray every rank writes its own files into a local folder and Ray merges them into one
storage folder; without Ray all ranks write into the same folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reasonguard.io import atomic_dir

log = logging.getLogger(__name__)

HF_DIR = "hf"
ENGINE_DIR = "engine"
STATE_FILE = "trainer_state.json"
LOCAL_CKPT_PREFIX = "checkpoint_step_"
# A multimodal student's processor (google/gemma-3-4b-it and up load as Gemma3ForConditionalGeneration): vLLM
# builds that model's processor when its engine starts and fails without these. Model and tokenizer saves
# write none of them, so they are copied from the base; a text-only model has none and needs none.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json")


@dataclass
class TrainerState:
    """Where training stands: `step` optimizer steps done, `epoch` and `step_in_epoch` locate the next one."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    total_steps: int = 0
    tokens: int = 0
    log_history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def read(cls, folder: str | Path) -> "TrainerState":
        data = json.loads((Path(folder) / STATE_FILE).read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def checkpoint_name(step: int) -> str:
    return f"{LOCAL_CKPT_PREFIX}{step:07d}"


def write_state(state: TrainerState, folder: str | Path) -> None:
    path = Path(folder) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, path)


def save_hf(model, tokenizer, folder: str | Path, state_dict: dict | None = None) -> Path:
    """Rank 0 only: the (unwrapped) model or peft adapter, and the tokenizer, as a HF folder; a full
    model also gets its base's processor configs (`PROCESSOR_FILES`), so that vLLM can load the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if not hasattr(model, "peft_config"):  # an adapter is served on its base, which has its own processor
        copy_processor_files(getattr(model, "name_or_path", None), folder)
    return folder


def copy_processor_files(base: str | Path | None, folder: str | Path) -> list[str]:
    """Copy the processor configs of `base` (a local checkpoint or a hub id) that `folder` lacks; returns
    the names copied. Warns when `folder` holds a multimodal model (a `vision_config`) and no processor."""
    folder = Path(folder)
    copied = []
    for name in PROCESSOR_FILES if base else ():
        if (folder / name).exists():
            continue
        source = Path(base) / name
        if not Path(base).is_dir():  # a hub id: its cached file, downloaded if need be
            try:
                from transformers.utils import cached_file

                found = cached_file(str(base), name, _raise_exceptions_for_missing_entries=False,
                                    _raise_exceptions_for_connection_errors=False)
            except (OSError, ValueError) as exc:
                log.warning("could not look up %s of %s: %s", name, base, exc)
                found = None
            source = Path(found) if found else source
        if source.is_file():
            shutil.copy(source, folder / name)
            copied.append(name)
    config = folder / "config.json"
    if (config.exists() and "vision_config" in json.loads(config.read_text())
            and not any((folder / name).exists() for name in PROCESSOR_FILES)):
        log.warning("%s holds a multimodal model but no processor config (none found in %s): vLLM will not load it",
                    folder, base)
    return copied


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / "adapter_config.json").exists()


def export_final(hf_dir: str | Path, out_dir: str | Path, base_model: str | None = None, merge_lora: bool = True) -> Path:
    """Copy a checkpoint's HF folder to `out_dir` (atomically); a LoRA adapter is merged into its base
    when `merge_lora` (then `<out_dir>-adapter` keeps the adapter alone). A full model gets the base's
    processor configs it lacks (a multimodal student: vLLM needs them)."""
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if is_adapter(hf_dir) and merge_lora:
            merge_adapter(hf_dir, tmp, base_model)
            adapter_out = out_dir.with_name(out_dir.name + "-adapter")
            if adapter_out.exists():
                shutil.rmtree(adapter_out)
            shutil.copytree(hf_dir, adapter_out)
        else:
            shutil.copytree(hf_dir, tmp, dirs_exist_ok=True)
            if not is_adapter(hf_dir):  # checkpoints saved before save_hf carried the processor
                copy_processor_files(base_model, tmp)
    return out_dir


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None,
                  tokenizer_dir: str | Path | None = None) -> Path:
    """Base model + LoRA adapter -> one plain HF checkpoint (what vLLM serves without LoRA support).

    The tokenizer comes from the adapter folder, or `tokenizer_dir` (a shipped adapter carries none)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir = Path(adapter_dir)
    base = base_model or json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    from reasonguard.models import resolve_model

    base_path = resolve_model(base)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(tokenizer_dir or adapter_dir)).save_pretrained(out_dir)
    generation = Path(base_path) / "generation_config.json"
    if generation.exists():
        shutil.copy(generation, Path(out_dir) / "generation_config.json")
    copy_processor_files(base_path, out_dir)
    return Path(out_dir)


def local_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under `root` (those with a trainer state), oldest first."""
    root = Path(root)
    if not root.exists():
        return []
    found = [p for p in root.glob(f"{LOCAL_CKPT_PREFIX}*") if (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: p.name)


def prune_local_checkpoints(root: str | Path, keep: int | None) -> None:
    if keep is None:
        return
    for old in local_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
