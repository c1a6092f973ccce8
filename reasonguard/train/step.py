"""One optimizer step: the token loss of each micro-batch, scaled so that any micro-batch x
accumulation split of a global batch gives the same update (summed token cross-entropy over the
assistant tokens, divided by their count in the whole global batch, all ranks)."""

from __future__ import annotations

from typing import Any


def all_reduce(values: list[float], op: str = "sum") -> list[float]:
    import torch
    import torch.distributed as dist

    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return t.cpu().tolist()


def micro_loss_sum(backend, batch, device):
    """Summed cross-entropy of the next-token labels; logits are computed only where a label is."""
    import torch
    import torch.nn.functional as F

    ids = torch.tensor(batch.input_ids, device=device)
    next_labels = torch.tensor(batch.labels, device=device)[:, 1:]
    keep = (next_labels != -100).any(0).nonzero().squeeze(-1)
    kwargs: dict[str, Any] = {"input_ids": ids, "use_cache": False, "logits_to_keep": keep}
    if batch.attention_mask is not None:
        kwargs["attention_mask"] = torch.tensor(batch.attention_mask, device=device)
    if batch.position_ids is not None:
        kwargs["position_ids"] = torch.tensor(batch.position_ids, device=device)
    logits = backend.forward(**kwargs).logits
    targets = next_labels[:, keep]
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")


def train_step(backend, micro_batches, world_size: int, device) -> tuple[float, int]:
    """One optimizer step over this rank's micro-batches; (global mean token loss, global tokens)."""
    local_label_tokens = sum(b.n_label_tokens for b in micro_batches)
    local_tokens = sum(b.n_tokens for b in micro_batches)
    global_label_tokens, _ = all_reduce([float(local_label_tokens), 0.0])
    scale = world_size * len(micro_batches) / max(global_label_tokens, 1.0)
    loss_sum = 0.0
    for k, batch in enumerate(micro_batches):
        with backend.accumulate(last=k == len(micro_batches) - 1):
            loss = micro_loss_sum(backend, batch, device)
            backend.backward(loss * scale)
        backend.micro_step()
        loss_sum += float(loss.detach())
    total_loss, total_tokens = all_reduce([loss_sum, float(local_tokens)])
    return total_loss / max(global_label_tokens, 1.0), int(total_tokens)
