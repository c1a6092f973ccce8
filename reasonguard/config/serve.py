"""`ServeConfig`: the guard behind Ray Serve (engine, replicas, autoscaling, batching, limits, auth).

One typed config feeds `python -m jobs.serve`, `serve run`/`serve deploy` (the Serve YAML's
`args.config` points at a file of this model) and the KubeRay RayService generated from it, so
replica counts, resources and limits live in one place.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel
from reasonguard.config.common import DecodingSettings, Mode, PolicySpec, RayConfig
from reasonguard.config.engine import EngineConfig


class AutoscalingSettings(StrictModel):
    """Serve's request-based autoscaler: replicas between min and max, aiming at `target_ongoing_requests` each."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas (0 = scale to zero; the first request then waits for a start).")
    max_replicas: int = Field(1, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(
        8, gt=0, description="Requests in flight per replica the autoscaler aims at (vLLM batches; keep it high on GPUs)."
    )
    upscale_delay_s: float = Field(30, ge=0, description="Load must stay high this long before a replica is added.")
    downscale_delay_s: float = Field(600, ge=0, description="Load must stay low this long before a replica is removed.")
    metrics_interval_s: float = Field(10, gt=0, description="How often each replica reports its ongoing requests.")
    look_back_period_s: float = Field(30, gt=0, description="The window the autoscaler averages the load over.")

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscalingSettings":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})")
        return self

    def to_serve(self) -> dict:
        return self.model_dump()


class ReplicaSettings(StrictModel):
    """One replica = one engine (one model copy): its resources, queue bounds and health checks."""

    num_replicas: int | None = Field(
        None, ge=1, description="A fixed replica count; None = use `autoscaling` (exactly one of the two applies)."
    )
    num_cpus: float = Field(1, ge=0, description="CPUs Ray reserves per replica (vLLM's engine process runs beside it).")
    num_gpus: float = Field(0, ge=0, description="GPUs per replica (tensor parallel > 1 needs a placement group instead).")
    max_ongoing_requests: int = Field(32, ge=1, description="Requests sent to one replica at once (must cover a full batch).")
    max_queued_requests: int = Field(
        -1, ge=-1, description="Requests queued per caller (proxy) before Serve rejects with 503 + Retry-After (-1 = unbounded)."
    )
    retry_after_s: float = Field(2, ge=0, description="The Retry-After value (seconds) on every 503 from overload.")
    health_check_period_s: float = Field(10, gt=0, description="How often Serve calls the replica's health check.")
    health_check_timeout_s: float = Field(60, gt=0, description="A health check slower than this fails the replica.")
    graceful_shutdown_timeout_s: float = Field(20, ge=0, description="In-flight requests get this long when a replica stops.")
    env_vars: dict[str, str] = Field(
        default_factory=dict, description="Non-secret environment variables of the replica (e.g. VLLM_CPU_KVCACHE_SPACE)."
    )
    failover_retries: int = Field(
        4, ge=0, description="A call whose replica dies is sent again (to another replica) up to this many times; "
        "guard calls are idempotent.",
    )


class IngressSettings(StrictModel):
    """The HTTP front deployment (no model): probes, auth, validation, failover to another model replica."""

    num_replicas: int = Field(1, ge=1, description="Ingress replicas (2+ on a cluster, so the front survives a node).")
    num_cpus: float = Field(0, ge=0, description="CPUs reserved per ingress replica (0: it must always fit).")
    max_ongoing_requests: int = Field(1024, ge=1, description="Requests one ingress replica holds at once.")


class BatchingSettings(StrictModel):
    """Dynamic batching: concurrent conversations (across requests) share one engine call.

    'queue': conversations that arrive while the engine is busy form the next batch, which starts
    the moment the engine is free (no waiting when idle). 'serve': Ray Serve's `@serve.batch`, which
    forms the next batch from the first arrival plus `batch_wait_timeout_s`, even while the engine
    is still busy (smaller batches under load; see docs/benchmarks.md).
    """

    enabled: bool = Field(True, description="Off = each conversation is its own engine call (one at a time per replica).")
    strategy: Literal["queue", "serve"] = Field("queue", description="'queue' (drain when the engine is free) or 'serve' (@serve.batch).")
    max_batch_size: int = Field(16, ge=1, description="Conversations per engine call.")
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, description="How long a batch waits for more conversations before it starts (0 = start at once)."
    )


class LimitSettings(StrictModel):
    """Input bounds. Exceeding one is a 413 naming the limit; none of them can reach the engine."""

    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body in bytes.")
    max_text_chars: int = Field(32_000, ge=1, description="Longest prompt, response or message content, in characters.")
    max_messages: int = Field(64, ge=1, description="Most messages in one conversation.")
    max_batch_items: int = Field(64, ge=1, description="Most conversations in one batch request.")
    max_pending_items: int = Field(
        256, ge=1, description="Conversations admitted per replica at once; more are rejected with 503 + Retry-After."
    )
    max_reasoning_tokens: int = Field(2048, ge=1, description="Highest reasoning budget (think-mode max_tokens) a request may ask for.")
    max_completion_tokens: int = Field(1024, ge=1, description="Highest max_tokens of /v1/chat/completions.")
    max_choices: int = Field(4, ge=1, description="Highest `n` of /v1/chat/completions.")


class TimeoutSettings(StrictModel):
    """Per-request deadlines: past them the client gets 504 (the engine work is discarded)."""

    request_s: float = Field(60, gt=0, description="Default deadline of one request, queueing included.")
    max_request_s: float = Field(300, gt=0, description="Longest deadline a request may ask for with `timeout_s`.")

    @model_validator(mode="after")
    def _order(self) -> "TimeoutSettings":
        if self.request_s > self.max_request_s:
            raise ValueError(f"request_s ({self.request_s}) > max_request_s ({self.max_request_s})")
        return self


class AuthSettings(StrictModel):
    """Bearer-token auth. The token itself never goes in a config file: it is read from the replica's environment."""

    token_env: str | None = Field(
        "REASONGUARD_SERVE_TOKEN",
        description="Environment variable holding the API token; when it is set and non-empty in the replica, "
        "every /v1 route needs `Authorization: Bearer <token>`. None = no auth.",
    )
    required: bool = Field(False, description="Fail the replica's start when the token variable is missing (production).")


class GuardSettings(StrictModel):
    """Defaults of /v1/guard that a request may override."""

    mode: Mode = Field("no_think", description="Default mode ('no_think' is as good for vanilla safety and much faster).")
    policy: PolicySpec = Field(None, description="Default policy: None = Aegis 2.0 taxonomy; a category list; free text.")
    temperature: float = Field(0.0, ge=0, le=2, description="Default temperature (0 = greedy, deterministic answers).")
    top_p: float = Field(0.95, gt=0, le=1, description="Default top-p when sampling.")
    no_think_max_tokens: int = Field(48, ge=8, description="max_tokens in no_think mode (two verdict lines + categories).")
    categories: bool = Field(False, description="Name the violated categories by default (requests may set `categories`).")
    think_max_tokens: int = Field(400, ge=16, description="max_tokens in think mode (paper: 400), unless a budget is asked.")
    verdict_tokens: int = Field(32, ge=8, description="Tokens added to a request's reasoning budget for the verdict lines.")
    score_only_max_tokens: int = Field(
        24, ge=4, description="max_tokens of score-only requests (no_think, verdict only; raised to what the verdict needs).",
    )
    top_logprobs: int = Field(10, ge=1, le=20, description="Candidates per position kept for the verdict-token score (unconstrained).")
    threshold: float | None = Field(
        None, ge=0, le=1, description="Default decision threshold on `score` (calibrated where a calibration is loaded); "
        "None = the verdict.",
    )
    decoding: DecodingSettings = Field(
        default_factory=DecodingSettings, description="Verdict-safe decoding (vLLM and transformers engines) and the "
        "calibration of `score` (the same block as predict's).",
    )
    on_missing_verdict: Literal["flag", "allow", "null"] = Field(
        "flag", description="When no verdict could be read (an unconstrained engine, a broken output): 'flag' = flagged "
        "true with a reason (fail closed, as NeMo Guardrails does), 'allow' = flagged false (fail open), 'null' = flagged null.",
    )


class HttpSettings(StrictModel):
    """Where `python -m jobs.serve` starts Serve's HTTP proxy (ignored when Serve already runs on the cluster)."""

    host: str = Field("127.0.0.1", description="Bind address of the proxy ('0.0.0.0' on a cluster).")
    port: int = Field(8000, ge=0, le=65535, description="Port of the proxy (0 = the proxy binds any free port "
                      "and the URL reports it: for tests).")
    request_timeout_s: float | None = Field(None, gt=0, description="Serve's own end-to-end timeout (408); None = none.")


class OperationsSettings(StrictModel):
    """What an operator reaches besides the API: Prometheus metrics and Ray's dashboard (`serve status`).

    Applies when `python -m jobs.serve` starts Ray itself; a cluster's Ray (KubeRay) has its own settings."""

    metrics_export_port: int = Field(8081, ge=0, le=65535, description="Ray's Prometheus endpoint (fixed, so a scraper "
                                     "finds it; 0 = Ray picks one, read back from Ray's node table: for tests).")
    metrics_path: bool = Field(True, description="Also answer GET /metrics on the app's port (Ray's endpoint, proxied).")
    playground: bool = Field(True, description="Serve GET /playground: a static page to try the guard by hand "
                             "(it calls /v1/guard with the token typed into it; it holds no data itself).")
    dashboard: bool = Field(True, description="Run Ray's dashboard, so `serve status` and `ray job submit` work.")
    dashboard_host: str = Field("127.0.0.1", description="Bind address of the dashboard (loopback unless you open it).")
    dashboard_port: int = Field(8265, ge=1, le=65535)


class UpstreamSettings(StrictModel):
    """The LLM whose answers the guard moderates: an OpenAI-compatible server (vLLM, NIM, a gateway)."""

    base_url: str = Field(min_length=1, pattern=r"^https?://", description="Its OpenAI API root, e.g. http://llm:8000/v1.")
    model: str = Field(min_length=1, description="Its model name: requests that name it go to the upstream, moderated.")
    api_key_env: str | None = Field(None, description="Environment variable holding its API key (None = no key).")
    timeout_s: float = Field(300, gt=0, description="Per-request timeout towards the upstream (connect and each read).")


class ModerationSettings(StrictModel):
    """The moderating proxy: /v1/chat/completions for `upstream.model` (stream or not) goes to the upstream
    LLM; the guard checks the prompt first and the response every `check_every_tokens` streamed tokens
    (and at sentence ends), and the stream ends with finish_reason "content_filter" at the first harmful
    verdict."""

    upstream: UpstreamSettings
    check_prompt: bool = Field(True, description="Check the prompt before the upstream is called.")
    check_every_tokens: int = Field(32, ge=1, description="Check the response so far after this many streamed "
                                    "tokens (upstream content deltas; one per token on vLLM).")
    check_at_sentence_end: bool = Field(True, description="Also check when a sentence ends (after at least "
                                        "`min_tokens_between_checks`).")
    min_tokens_between_checks: int = Field(8, ge=1, description="No check sooner than this after the previous one.")
    release: Literal["after_check", "immediate"] = Field(
        "after_check", description="after_check: text reaches the client only once a check passed it (nothing "
        "harmful is ever shown; adds latency per chunk); immediate: text goes out at once and the stream is cut "
        "at the first harmful verdict (lower latency; up to one check interval of text is shown).")
    mode: Mode = Field("no_think", description="Guard mode of the checks (no_think: a verdict in a few tokens).")
    policy: PolicySpec = Field(None, description="The checks' policy (None = the guard's default); the client's own "
                               "system message is the upstream's instruction, never the guard's policy.")
    threshold: float | None = Field(None, ge=0, le=1, description="Cut when P(harmful) >= threshold (None = the verdict).")


class ServeConfig(StrictModel):
    """The dual-mode guard as a Ray Serve application."""

    engine: EngineConfig
    engine_mode: Literal["auto", "batch", "async"] = Field(
        "auto",
        description="'async' (kind vllm): vLLM's AsyncLLM, which batches continuously (a conversation joins the running "
        "batch at the next step); 'batch': the engine's synchronous generate() on batches formed by `batching`; "
        "'auto' = async for vllm (unless batching.strategy is 'serve', which drives the synchronous engine), "
        "batch otherwise (measured in docs/benchmarks.md).",
    )
    served_model_name: str | None = Field(None, description="Model id in responses and /v1/models (default: engine.model).")
    app_name: str = Field("guard", min_length=1, description="Serve application name.")
    route_prefix: str = Field("/", pattern=r"^/", description="HTTP route prefix of the application.")
    deployment_name: str = Field("GuardDeployment", min_length=1, description="Serve deployment name.")
    replica: ReplicaSettings = Field(default_factory=ReplicaSettings)
    autoscaling: AutoscalingSettings | None = Field(
        default_factory=AutoscalingSettings, description="Autoscaling (ignored when replica.num_replicas is set)."
    )
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    operations: OperationsSettings = Field(default_factory=OperationsSettings)
    ingress: IngressSettings = Field(default_factory=IngressSettings)
    moderation: ModerationSettings | None = Field(
        None, description="A moderating proxy in front of an upstream LLM (None = the guard's own API only).")
    ray: RayConfig = Field(default_factory=RayConfig)
    blocking: bool = Field(True, description="jobs.serve: keep running until interrupted (False = deploy and return).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Replica log level.")

    @model_validator(mode="after")
    def _consistent(self) -> "ServeConfig":
        if self.engine_mode == "async" and self.engine.kind != "vllm":
            raise ValueError(f"engine_mode 'async' needs engine.kind 'vllm', not {self.engine.kind!r}")
        if self.engine_mode == "async" and self._serve_batching:
            raise ValueError("batching.strategy 'serve' (@serve.batch) drives the synchronous engine: "
                             "use engine_mode 'batch' or 'auto', or strategy 'queue'")
        if self.replica.num_replicas is None and self.autoscaling is None:
            raise ValueError("set replica.num_replicas or autoscaling")
        if self.batching.enabled and self.replica.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError(
                f"replica.max_ongoing_requests ({self.replica.max_ongoing_requests}) must be >= "
                f"batching.max_batch_size ({self.batching.max_batch_size}), or batches never fill"
            )
        return self

    @property
    def _serve_batching(self) -> bool:
        return self.batching.enabled and self.batching.strategy == "serve"

    @property
    def resolved_engine_mode(self) -> str:
        if self.engine_mode == "auto":
            return "async" if self.engine.kind == "vllm" and not self._serve_batching else "batch"
        return self.engine_mode

    @property
    def model_name(self) -> str:
        """The model's public name: `served_model_name`, else engine.model as written, except that a local
        path is never shown (it tells callers about the server's filesystem): its folder name is."""
        return self.served_model_name or public_model_name(self.engine.model)


def public_model_name(model: str) -> str:
    """An alias or hub id as is; a filesystem path as its last folder name (`<run>/final` -> `<run>-final`)."""
    from pathlib import Path

    path = Path(model).expanduser()
    if not (model.startswith((".", "/", "~")) or path.exists()):
        return model
    parts = [p for p in path.parts if p not in ("/", ".", "..", "~")]
    if not parts:
        return "model"
    if parts[-1] in ("final", "hf", "merged") and len(parts) > 1:
        return f"{parts[-2]}-{parts[-1]}"
    return parts[-1]
