"""Dataset names -> loaders, and the evaluation suites built from them.

`load_dataset("xstest")` loads a vendored folder (from `root`, or the default datasets root),
`load_dataset("hf_aegis2_test")` a hub dataset, `load_dataset("demo")` the sample shipped in the
package. Every example's `source` equals the name it was loaded under (the demo keeps its rows'
original sources).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reasonguard.datasets import hub, local
from reasonguard.datasets.demo import load_demo
from reasonguard.schema import GuardExample

Task = Literal["prompt", "response", "refusal"]
TASKS: tuple[str, ...] = ("prompt", "response", "refusal")
_LABEL_FIELDS = {"prompt": "prompt_harm_label", "response": "response_harm_label", "refusal": "response_refusal_label"}


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: `local` loaders take the dataset folder, `hub` and `embedded` ones nothing."""

    name: str
    loader: Callable[..., list[GuardExample]]
    kind: Literal["local", "hub", "embedded"]
    license: str
    folder: str | None = None


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    if spec.kind == "local" and not spec.folder:
        raise ValueError(f"local dataset {spec.name!r} needs its folder name")
    REGISTRY[spec.name] = spec
    return spec


def _local(name: str, folder: str, license: str, loader: Callable[..., list[GuardExample]], **kwargs) -> None:
    register(DatasetSpec(name, functools.partial(loader, **kwargs) if kwargs else loader, "local", license, folder))


def _hub(name: str, license: str, loader: Callable[..., list[GuardExample]], **kwargs) -> None:
    register(DatasetSpec(name, functools.partial(loader, **kwargs), "hub", license))


_GR_LICENSES = {
    "aegis": "CC-BY-4.0",
    "toxicchat": "CC-BY-NC-4.0",
    "openai_moderation": "MIT",
    "simplesafetytests": "CC-BY-4.0",
    "harmbench_prompt": "MIT",
    "harmbench_response": "MIT",
    "xstest_response_harm": "CC-BY-4.0 (completions: model licenses)",
    "xstest_response_refusal": "CC-BY-4.0 (completions: model licenses)",
    "safe_rlhf": "CC-BY-NC-4.0",
    "beavertails": "CC-BY-NC-4.0",
}


def _register_builtin() -> None:
    _local("alpaca_harmless_sample", "alpaca_harmless_sample", "CC-BY-NC-4.0", local.load_alpaca_harmless_sample)
    _local("beavertails", "beavertails", "CC-BY-NC-4.0", local.load_beavertails)
    _local("do_not_answer", "do_not_answer", "Apache-2.0", local.load_do_not_answer, variant="instructions")
    _local("do_not_answer_responses", "do_not_answer", "Apache-2.0", local.load_do_not_answer, variant="responses")
    for subset, license in _GR_LICENSES.items():
        _local(f"guardreasoner_eval.{subset}", "guardreasoner_eval", license, local.load_guardreasoner_eval, subset=subset)
    _local("guardreasoner_train_prompts_5k", "guardreasoner_train_prompts_5k", "mixed (ODC-BY, CC-BY-4.0, CC-BY-NC-4.0)",
           local.load_guardreasoner_train_prompts_5k)
    _local("harmbench", "harmbench", "MIT", local.load_harmbench, variant="all")
    _local("harmbench_test", "harmbench", "MIT", local.load_harmbench, variant="test")
    _local("harmbench_val", "harmbench", "MIT", local.load_harmbench, variant="val")
    for variant in ("behaviors", "harmful", "benign", "responses"):
        name = "jailbreakbench" if variant == "behaviors" else f"jailbreakbench_{variant}"
        _local(name, "jailbreakbench", "MIT", local.load_jailbreakbench, variant=variant)
    _local("openai_moderation", "openai_moderation", "MIT", local.load_openai_moderation)
    _local("simple_safety_tests", "simple_safety_tests", "CC-BY-4.0", local.load_simple_safety_tests)
    _local("strongreject", "strongreject", "MIT (+ source licenses)", local.load_strongreject, variant="full")
    _local("strongreject_small", "strongreject", "MIT (+ source licenses)", local.load_strongreject, variant="small")
    _local("topic_following", "topic_following_canttalkaboutthis", "CC-BY-4.0 (distractors: Apache-2.0 / unspecified)",
           local.load_topic_following)
    for part in ("train", "test"):  # a held-out split by scenario (local.topic_held_out_scenarios)
        _local(f"topic_following_{part}", "topic_following_canttalkaboutthis",
               "CC-BY-4.0 (distractors: Apache-2.0 / unspecified)", local.load_topic_following, scenarios=part)
    _local("toxicchat", "toxicchat", "CC-BY-NC-4.0", local.load_toxicchat, variant="full")
    _local("toxicchat_guardreasoner", "toxicchat", "CC-BY-NC-4.0", local.load_toxicchat, variant="guardreasoner")
    _local("wildguardtest_prompts_derived", "wildguardtest_prompts_derived", "ODC-BY",
           local.load_wildguardtest_prompts_derived)
    _local("xstest", "xstest", "CC-BY-4.0", local.load_xstest)
    _local("xstest_completions", "xstest", "CC-BY-4.0 (completions: model licenses)", local.load_xstest_completions)

    _hub("hf_wildguardmix_train", "ODC-BY", hub.load_wildguardmix, subset="wildguardtrain")
    _hub("hf_wildguardmix_test", "ODC-BY", hub.load_wildguardmix, subset="wildguardtest")
    for split in hub.AEGIS2_SPLITS:
        _hub(f"hf_aegis2_{split}", "CC-BY-4.0", hub.load_aegis2, split=split)
    for split in ("train", "test"):
        _hub(f"hf_toxicchat_{split}", "CC-BY-NC-4.0", hub.load_toxicchat_hub, split=split)
    for split in ("30k_train", "30k_test"):
        _hub(f"hf_beavertails_{split}", "CC-BY-NC-4.0", hub.load_beavertails_hub, split=split)
    _hub("hf_nemotron_safety_reasoning", "CC-BY-4.0", hub.load_nemotron_reasoning, subset="safety")
    _hub("hf_nemotron_topic_control_reasoning", "CC-BY-4.0", hub.load_nemotron_reasoning, subset="topic_control")

    register(DatasetSpec("demo", load_demo, "embedded", "MIT / CC-BY-4.0 (see reasonguard/data/demo/ATTRIBUTION.md)"))


_register_builtin()


def list_datasets(kind: str | None = None) -> list[str]:
    """Registered names, sorted; `kind` ("local", "hub", "embedded") filters."""
    return sorted(name for name, spec in REGISTRY.items() if kind is None or spec.kind == kind)


def get_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(list_datasets())}") from None


def load_dataset(name: str, root: str | os.PathLike | None = None, limit: int | None = None) -> list[GuardExample]:
    """Load a registered dataset; `root` is the datasets folder for local ones (default: the env/default root)."""
    spec = get_spec(name)
    if spec.kind == "local":
        examples = spec.loader(None if root is None else Path(root) / spec.folder)
    else:
        examples = spec.loader()
    return examples if limit is None else examples[:limit]


# ---------------------------------------------------------------- suites


@dataclass(frozen=True)
class SuiteEntry:
    """One benchmark of a suite: its name, the task it scores and the registered dataset it loads."""

    name: str
    task: Task
    loader: str

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"suite task must be one of {TASKS}, got {self.task!r}")
        get_spec(self.loader)

    @property
    def label_field(self) -> str:
        return _LABEL_FIELDS[self.task]

    def load(self, root: str | os.PathLike | None = None, limit: int | None = None) -> list[GuardExample]:
        return load_dataset(self.loader, root=root, limit=limit)


def task_label(example: GuardExample, task: Task) -> str | None:
    """The gold label an example carries for a task (refusal labels live in extra)."""
    if task == "refusal":
        return example.extra.get("response_refusal_label")
    return getattr(example, _LABEL_FIELDS[task])


# The ten GuardReasoner test sets (harmful-class F1), refusal kept as its own task.
EVAL_SUITE: tuple[SuiteEntry, ...] = (
    SuiteEntry("aegis", "prompt", "guardreasoner_eval.aegis"),
    SuiteEntry("toxicchat", "prompt", "guardreasoner_eval.toxicchat"),
    SuiteEntry("openai_moderation", "prompt", "guardreasoner_eval.openai_moderation"),
    SuiteEntry("simplesafetytests", "prompt", "guardreasoner_eval.simplesafetytests"),
    SuiteEntry("harmbench_prompt", "prompt", "guardreasoner_eval.harmbench_prompt"),
    SuiteEntry("harmbench_response", "response", "guardreasoner_eval.harmbench_response"),
    SuiteEntry("xstest_response_harm", "response", "guardreasoner_eval.xstest_response_harm"),
    SuiteEntry("safe_rlhf", "response", "guardreasoner_eval.safe_rlhf"),
    SuiteEntry("beavertails", "response", "guardreasoner_eval.beavertails"),
    SuiteEntry("xstest_response_refusal", "refusal", "guardreasoner_eval.xstest_response_refusal"),
)

EXTRA_SUITE: tuple[SuiteEntry, ...] = (
    SuiteEntry("xstest_prompts", "prompt", "xstest"),
    SuiteEntry("wildguardtest_prompts", "prompt", "wildguardtest_prompts_derived"),
    SuiteEntry("jailbreakbench_behaviors", "prompt", "jailbreakbench"),
    SuiteEntry("simple_safety_tests", "prompt", "simple_safety_tests"),
)
