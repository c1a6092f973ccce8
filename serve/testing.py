"""A format-trained tiny guard for the Serve tests, benchmarks and CPU demos.

The tiny random Llama writes noise, so nothing downstream of the verdict (parsing, P(harmful),
thresholds, metrics by verdict) would be exercised for real. A few hundred steps of SFT on the
embedded demo sample, in both modes, teach it the guard's output format (the verdicts themselves
are barely better than chance; it is a plumbing model, not a guard). Built once and cached.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from reasonguard.io import atomic_dir

log = logging.getLogger(__name__)

TINY_GUARD_NAME = "tiny-guard-v1"
REASONS = {
    "harmful": "The request asks for help with something that could hurt people.",
    "unharmful": "The request is ordinary and asks for nothing dangerous.",
}


def _chats() -> list[list[dict]]:
    from reasonguard.datasets import load_demo
    from reasonguard.targets import build_chat_example

    chats = []
    for example in load_demo():
        for mode in ("no_think", "think"):
            reasoning = REASONS[example.response_harm_label or example.prompt_harm_label] if mode == "think" else None
            chats.append(build_chat_example(example, mode, reasoning=reasoning))
    return chats


def _encode(tokenizer, chat: list[dict]) -> tuple[list[int], list[int]]:
    """(input ids, labels): the prompt as vLLM renders it, then the target up to <|im_end|>."""
    prefix = tokenizer.apply_chat_template(chat[:1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(chat, tokenize=False)
    if not full.startswith(prefix):
        raise ValueError("chat template renders the prompt differently with the answer appended")
    end = full.index(tokenizer.eos_token, len(prefix)) + len(tokenizer.eos_token)
    p_ids = tokenizer(prefix, add_special_tokens=False).input_ids
    t_ids = tokenizer(full[len(prefix) : end], add_special_tokens=False).input_ids
    return p_ids + t_ids, [-100] * len(p_ids) + t_ids


def build_tiny_guard(target: Path | None = None, steps: int = 300, batch_size: int = 8, lr: float = 3e-3, force: bool = False) -> Path:
    """Fine-tune the tiny Llama (reasonguard.models.build_tiny_model) on guard-format targets; cached."""
    from reasonguard.models import _is_complete, _write_generation_defaults, build_tiny_model, cache_dir

    target = Path(target) if target else cache_dir() / TINY_GUARD_NAME
    if _is_complete(target) and not force:
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = build_tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    encoded = [_encode(tokenizer, chat) for chat in _chats()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = random.Random(0)
    model.train()
    for step in range(steps):
        batch = rng.sample(encoded, batch_size)
        width = max(len(ids) for ids, _ in batch)
        pad = tokenizer.pad_token_id or 0
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
        next_labels = labels[:, 1:]
        keep = next_labels != -100  # logits only where there is a target: 49k-way heads on ~30 tokens, not 600
        logits = model.lm_head(hidden[keep])
        loss = torch.nn.functional.cross_entropy(logits, next_labels[keep])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            log.info("tiny guard step %d loss %.4f", step, loss.item())
    model.eval()
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_generation_defaults(tmp, tokenizer)
    return target


def autoscaling_demo_config(model_dir: str, http_port: int, metrics_port: int, upscale_delay_s: float = 2,
                            downscale_delay_s: float = 6):
    """A 1..2-replica guard on the transformers engine with short autoscaler delays, batching through
    `@serve.batch`: what the autoscaling test and benchmarks/serve_autoscaling.py run (production values:
    cluster/configs/serve_gpu.yaml)."""
    from reasonguard.config.serve import ServeConfig

    return ServeConfig.model_validate({
        "engine": {"kind": "transformers", "model": model_dir, "device": "cpu", "batch_size": 4},
        "served_model_name": "tiny-guard",
        "autoscaling": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2,
                        "upscale_delay_s": upscale_delay_s, "downscale_delay_s": downscale_delay_s,
                        "metrics_interval_s": 0.5, "look_back_period_s": 2},
        "replica": {"num_cpus": 0.5, "max_ongoing_requests": 8, "health_check_period_s": 2,
                    "graceful_shutdown_timeout_s": 2},
        "ingress": {"num_replicas": 1, "num_cpus": 0.1},
        "batching": {"enabled": True, "strategy": "serve", "max_batch_size": 4, "batch_wait_timeout_s": 0.01},
        "guard": {"temperature": 0.0},
        "http": {"host": "127.0.0.1", "port": http_port},
        "operations": {"metrics_export_port": metrics_port, "dashboard": False},
        "ray": {"num_cpus": 2},
    })

