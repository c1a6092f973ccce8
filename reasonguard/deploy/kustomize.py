"""Kustomize through the real tool: `kubectl kustomize` (or a standalone `kustomize build`), which
KubeRay users already have and this project's machines and CI install. Rendering is what the
cluster will see, not a re-implementation of it; validation (CRD schemas, serveConfigV2 drift)
runs on the rendered documents (reasonguard.deploy.kuberay)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class KustomizeError(RuntimeError):
    pass


def kustomize_command(directory: str | Path) -> list[str]:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(directory)]
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(directory)]
    raise KustomizeError("neither kubectl nor kustomize is on PATH: install kubectl (it ships kustomize) to render kuberay/")


def render(directory: str | Path) -> list[dict[str, Any]]:
    """The resources `kubectl kustomize <directory>` emits, parsed."""
    directory = Path(directory)
    if not any((directory / name).is_file() for name in KUSTOMIZATION_FILES):
        raise KustomizeError(f"no kustomization file in {directory}")
    out = subprocess.run(kustomize_command(directory), capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise KustomizeError(f"kustomize failed on {directory}: {out.stderr.strip()[:2000]}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """`registry/name:tag@digest` -> (name, tag, digest)."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    name, tag = ref, None
    if ":" in ref.rsplit("/", 1)[-1]:
        name, tag = ref.rsplit(":", 1)
    return name, tag, digest
