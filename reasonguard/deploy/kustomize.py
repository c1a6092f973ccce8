"""A small subset of kustomize, enough to render kuberay/base and kuberay/overlays/* without a binary.

Supported kustomization keys: `resources` (files or directories), `patches` (strategic-merge or
JSON6902, from `path` or inline `patch`, with an optional `target`) and `images`. Any other key
raises, so an overlay cannot start using a feature that the tests would silently ignore.

Strategic merge follows what kustomize does for custom resources, for which it knows no patch
strategy: maps merge recursively, lists are replaced whole, `null` deletes a key. When a kustomize
binary is installed, tests/deploy compares this renderer's output with `kubectl kustomize`.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "patches", "images"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot (or will not) render."""


def load_yaml_docs(path: str | Path) -> list[dict[str, Any]]:
    """All non-empty YAML documents of a file."""
    with open(path, encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def find_kustomization(directory: str | Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = Path(directory) / name
        if candidate.is_file():
            return candidate
    raise KustomizeError(f"no kustomization file in {directory}")


def render(directory: str | Path) -> list[dict[str, Any]]:
    """The resources that `kubectl kustomize <directory>` would emit (order not guaranteed)."""
    kdir = Path(directory)
    kfile = find_kustomization(kdir)
    spec = yaml.safe_load(kfile.read_text(encoding="utf-8")) or {}
    unknown = set(spec) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported kustomization keys {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = kdir / entry
        docs.extend(render(path) if path.is_dir() else load_yaml_docs(path))
    for patch in spec.get("patches", []):
        docs = apply_patch(docs, patch, kdir)
    for image in spec.get("images", []):
        for doc in docs:
            set_image(doc, image)
    _check_unique(docs, kfile)
    return docs


def _check_unique(docs: list[dict[str, Any]], source: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        key = (doc.get("kind", ""), doc.get("metadata", {}).get("name", ""))
        if key in seen:
            raise KustomizeError(f"{source}: duplicate resource {key}")
        seen.add(key)


# ---------------------------------------------------------------------------------------------
# patches


def apply_patch(docs: list[dict[str, Any]], patch: dict[str, Any], kdir: Path) -> list[dict[str, Any]]:
    """Apply one `patches:` entry to the resources; raises when it selects nothing."""
    if set(patch) - {"path", "patch", "target"}:
        raise KustomizeError(f"unsupported patch fields {sorted(set(patch) - {'path', 'patch', 'target'})}")
    if "path" in patch:
        text = (kdir / patch["path"]).read_text(encoding="utf-8")
    elif "patch" in patch:
        text = patch["patch"]
    else:
        raise KustomizeError("a patch needs `path` or `patch`")
    bodies = [b for b in yaml.safe_load_all(text) if b is not None]
    target = patch.get("target")
    label = patch.get("path", "<inline patch>")
    if len(bodies) == 1 and isinstance(bodies[0], list):
        if not target:
            raise KustomizeError(f"{label}: a JSON6902 patch needs a target")
        selected = [i for i, d in enumerate(docs) if _selected(d, target)]
        _require_match(selected, label)
        for i in selected:
            docs[i] = json6902(docs[i], bodies[0])
        return docs
    for body in bodies:
        if not isinstance(body, dict):
            raise KustomizeError(f"{label}: a strategic-merge patch must be a mapping")
        selector = target or {
            "kind": body.get("kind"),
            "name": re.escape(body.get("metadata", {}).get("name", "")),
        }
        selected = [i for i, d in enumerate(docs) if _selected(d, selector)]
        _require_match(selected, label)
        for i in selected:
            docs[i] = strategic_merge(docs[i], body)
    return docs


def _require_match(selected: list[int], label: str) -> None:
    if not selected:
        raise KustomizeError(f"{label}: the patch selects no resource")


def _selected(doc: dict[str, Any], target: dict[str, Any]) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name"}
    if unknown:
        raise KustomizeError(f"unsupported target fields {sorted(unknown)}")
    group, _, version = doc.get("apiVersion", "").rpartition("/")
    checks = {
        "group": group,
        "version": version,
        "kind": doc.get("kind", ""),
        "name": doc.get("metadata", {}).get("name", ""),
    }
    # kustomize matches target fields as anchored regular expressions.
    return all(re.fullmatch(str(target[k]), checks[k]) for k in target)


def strategic_merge(base: Any, patch: Any) -> Any:
    """kustomize's strategic merge for custom resources: maps merge, lists replace, null deletes."""
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(key, str) and key.startswith("$"):
            raise KustomizeError(f"strategic-merge directive {key} is not supported")
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = strategic_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _add(parent: Any, key: str, value: Any) -> None:
    if isinstance(parent, list):
        parent.insert(len(parent) if key == "-" else int(key), value)
    else:
        parent[key] = value


def _remove(parent: Any, key: str) -> Any:
    return parent.pop(int(key)) if isinstance(parent, list) else parent.pop(key)


def json6902(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 JSON Patch (add, remove, replace, move, copy, test) on a deep copy of `doc`."""
    out = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op["path"])
        try:
            parent = _walk(out, parts[:-1])
            key = parts[-1]
            if kind == "add":
                _add(parent, key, copy.deepcopy(op["value"]))
            elif kind == "remove":
                _remove(parent, key)
            elif kind == "replace":
                _walk(out, parts)  # must exist
                if isinstance(parent, list):
                    parent[int(key)] = copy.deepcopy(op["value"])
                else:
                    parent[key] = copy.deepcopy(op["value"])
            elif kind in ("move", "copy"):
                src = _pointer(op["from"])
                value = _walk(out, src)
                if kind == "move":
                    _remove(_walk(out, src[:-1]), src[-1])
                _add(_walk(out, parts[:-1]), key, copy.deepcopy(value))
            elif kind == "test":
                if _walk(out, parts) != op["value"]:
                    raise KustomizeError(f"JSON6902 test failed at {op['path']}: expected {op['value']!r}")
            else:
                raise KustomizeError(f"unsupported JSON6902 op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            if isinstance(exc, KustomizeError):
                raise
            raise KustomizeError(f"JSON6902 {kind} {op['path']}: path not found ({exc!r})") from None
    return out


# ---------------------------------------------------------------------------------------------
# images


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """`registry/name:tag@digest` -> (name, tag, digest)."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    name, tag = ref, None
    if ":" in ref.rsplit("/", 1)[-1]:
        name, tag = ref.rsplit(":", 1)
    return name, tag, digest


def set_image(doc: Any, image: dict[str, Any]) -> None:
    """kustomize's `images:` transformer: rewrites `image` in every containers/initContainers list."""
    if isinstance(doc, list):
        for item in doc:
            set_image(item, image)
        return
    if not isinstance(doc, dict):
        return
    for key, value in doc.items():
        if key in ("containers", "initContainers") and isinstance(value, list):
            for container in value:
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    container["image"] = _retag(container["image"], image)
        set_image(value, image)


def _retag(ref: str, image: dict[str, Any]) -> str:
    name, tag, digest = split_image(ref)
    if name != image["name"]:
        return ref
    name = image.get("newName", name)
    if "digest" in image:
        return f"{name}@{image['digest']}"
    if "newTag" in image:
        return f"{name}:{image['newTag']}"
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
