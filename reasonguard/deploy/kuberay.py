"""KubeRay manifests: generate the RayService `serveConfigV2` from the Serve config, validate against the CRDs.

`serveConfigV2` is never edited by hand. The Serve config files under cluster/serve/ are the source
of truth (the same files run on a local Ray with `serve run`); this module writes them into the
RayService manifests as a YAML string:

    python -m reasonguard.deploy.kuberay render-rayservice           # rewrite the manifests
    python -m reasonguard.deploy.kuberay render-rayservice --check   # exit 1 if a manifest drifted

On the way in, two fields that only make sense on a laptop are replaced:

* `runtime_env.working_dir` of every application becomes a URI, because KubeRay submits the config
  to the cluster's dashboard and a plain path means nothing there. The default is
  `local:///home/ray/reasonguard`: Ray 2.60's "directory already on every node" URI, pointing at
  the repository copy baked into our image (docker/Dockerfile). The code and the relative config
  paths in `args` then resolve exactly as in the local checkout, and nothing is uploaded.
  `--working-dir-uri s3://bucket/reasonguard.zip` ships code without rebuilding the image instead
  (then pass the same flag to `--check`); `--working-dir-uri ''` drops working_dir altogether.
* `http_options.host`/`port` become 0.0.0.0:8000, the address KubeRay's Serve service targets
  (the local file binds 127.0.0.1).

`validate_manifest(doc, crd_dir)` checks a RayCluster/RayJob/RayService against the CRD's
`openAPIV3Schema` with jsonschema, stricter than the API server: unknown fields are errors (the
server would silently prune a misspelt field). CEL rules (`x-kubernetes-validations`) are not run.

Pure module: pyyaml and jsonschema only, no Ray import.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import functools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from reasonguard.deploy import kustomize

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where docker/Dockerfile puts the repository (its WORKDIR); tests/deploy keeps the two equal.
IMAGE_APP_DIR = "/home/ray/reasonguard"
DEFAULT_WORKING_DIR_URI = f"local://{IMAGE_APP_DIR}"
SERVE_HTTP_HOST = "0.0.0.0"
SERVE_HTTP_PORT = 8000
CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}
KUBERAY_DIR = "kuberay"


@dataclass(frozen=True)
class ServeTarget:
    """A Serve config file and the manifest (or overlay patch) whose `spec.serveConfigV2` it generates."""

    serve_config: str  # repo-relative
    manifest: str  # repo-relative


SERVE_TARGETS = (
    ServeTarget("cluster/serve/guard_serve.yaml", "kuberay/base/rayservice-guard.yaml"),
    ServeTarget("cluster/serve/guard_serve_local.yaml", "kuberay/overlays/dev-cpu/patches/rayservice-serve-config.yaml"),
)


# ---------------------------------------------------------------------------------------------
# serveConfigV2 generation


def build_serve_config_v2(serve_config: dict[str, Any], working_dir_uri: str | None = DEFAULT_WORKING_DIR_URI) -> dict[str, Any]:
    """The Serve config as the cluster must see it (working_dir as a URI, HTTP on 0.0.0.0:8000)."""
    if working_dir_uri and "://" not in working_dir_uri:
        raise ValueError(f"working_dir for a RayService must be a URI (scheme://...), got {working_dir_uri!r}")
    apps = serve_config.get("applications")
    if not isinstance(apps, list) or not apps:
        raise ValueError("a Serve config needs a non-empty `applications` list")
    cfg = copy.deepcopy(serve_config)
    http = dict(cfg.get("http_options") or {})
    http.update(host=SERVE_HTTP_HOST, port=SERVE_HTTP_PORT)
    cfg["http_options"] = http
    for app in cfg["applications"]:
        if "import_path" not in app:
            raise ValueError(f"application {app.get('name')!r} has no import_path")
        env = dict(app.get("runtime_env") or {})
        env.pop("working_dir", None)
        if working_dir_uri:
            env = {"working_dir": working_dir_uri, **env}
        if env:
            app["runtime_env"] = env
        else:
            app.pop("runtime_env", None)
    return cfg


def render_serve_config_v2(serve_config_path: str | Path, source_label: str, working_dir_uri: str | None = DEFAULT_WORKING_DIR_URI) -> str:
    """The exact `serveConfigV2` string for a Serve config file (a header comment, then YAML)."""
    with open(serve_config_path, encoding="utf-8") as fh:
        cfg = build_serve_config_v2(yaml.safe_load(fh), working_dir_uri)
    header = (
        f"# Generated from {source_label} by `python -m reasonguard.deploy.kuberay render-rayservice`.\n"
        "# Edit that file and re-run the command; do not edit this string.\n"
    )
    return header + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, width=4096)


def replace_block_scalar(text: str, key: str, value: str) -> str:
    """Set `key:` (which must occur once in `text`) to a literal block holding `value`; the rest of the file is kept."""
    if not value.endswith("\n") or value.startswith((" ", "\n")):
        raise ValueError("value must end with a newline and not start with whitespace")
    lines = text.splitlines(keepends=True)
    pattern = re.compile(rf"^(\s*){re.escape(key)}:(\s|$)")
    hits = [i for i, line in enumerate(lines) if pattern.match(line)]
    if len(hits) != 1:
        raise ValueError(f"expected exactly one `{key}:` line, found {len(hits)}")
    start = hits[0]
    indent = len(lines[start]) - len(lines[start].lstrip(" "))
    end = probe = start + 1
    while probe < len(lines):  # the old value: every following line indented deeper (blank lines inside)
        line = lines[probe]
        if line.strip() and len(line) - len(line.lstrip(" ")) <= indent:
            break
        probe += 1
        if line.strip():
            end = probe
    pad = " " * (indent + 2)
    body = [pad + line if line.strip() else "\n" for line in value.splitlines(keepends=True)]
    return "".join(lines[:start] + [f"{' ' * indent}{key}: |\n"] + body + lines[end:])


def current_serve_config_v2(manifest_path: str | Path) -> str | None:
    with open(manifest_path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    return (doc or {}).get("spec", {}).get("serveConfigV2")


@dataclass(frozen=True)
class Drift:
    target: ServeTarget
    expected: str
    actual: str | None

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                (self.actual or "").splitlines(keepends=True),
                self.expected.splitlines(keepends=True),
                fromfile=f"{self.target.manifest} (committed)",
                tofile=f"{self.target.manifest} (from {self.target.serve_config})",
            )
        )


def check_serve_configs(root: str | Path = REPO_ROOT, working_dir_uri: str | None = DEFAULT_WORKING_DIR_URI, targets=SERVE_TARGETS) -> list[Drift]:
    """The targets whose committed serveConfigV2 differs from the generated one (empty: all in sync)."""
    root = Path(root)
    drifts = []
    for target in targets:
        expected = render_serve_config_v2(root / target.serve_config, target.serve_config, working_dir_uri)
        actual = current_serve_config_v2(root / target.manifest)
        if actual != expected:
            drifts.append(Drift(target, expected, actual))
    return drifts


def write_serve_configs(root: str | Path = REPO_ROOT, working_dir_uri: str | None = DEFAULT_WORKING_DIR_URI, targets=SERVE_TARGETS) -> list[str]:
    """Regenerate every target's serveConfigV2 in place; returns the manifests that changed."""
    root = Path(root)
    changed = []
    for drift in check_serve_configs(root, working_dir_uri, targets):
        path = root / drift.target.manifest
        text = replace_block_scalar(path.read_text(encoding="utf-8"), "serveConfigV2", drift.expected)
        if yaml.safe_load(text)["spec"]["serveConfigV2"] != drift.expected:
            raise RuntimeError(f"{path}: serveConfigV2 did not round-trip; is it under spec:?")
        path.write_text(text, encoding="utf-8")
        changed.append(drift.target.manifest)
    return changed


# ---------------------------------------------------------------------------------------------
# CRD validation


VENDORED_CRDS = Path(__file__).parent / "crds"  # KubeRay's CRDs (Apache-2.0), gzipped; see crds/SOURCE.md


def _has_crds(folder: Path) -> bool:
    return all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in CRD_FILES.values())


def find_crd_dir(root: str | Path = REPO_ROOT) -> Path | None:
    """$REASONGUARD_KUBERAY_CRDS (e.g. a newer KubeRay's CRDs), else the vendored copy; None when absent."""
    env = os.environ.get("REASONGUARD_KUBERAY_CRDS")
    candidate = Path(env) if env else VENDORED_CRDS
    return candidate if _has_crds(candidate) else None


_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# The CRDs say only `metadata: {type: object}`; check the parts a manifest author writes.
_METADATA_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 63, "pattern": _DNS_SUBDOMAIN},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
}
_INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not")


def k8s_to_jsonschema(node: Any) -> Any:
    """Turn a structural OpenAPI v3 schema into a strict JSON Schema.

    x-kubernetes-int-or-string -> integer or string; x-kubernetes-list-type map/set -> key
    uniqueness; nullable -> null allowed; int32/int64 formats -> bounds; objects with `properties`
    reject unknown fields unless x-kubernetes-preserve-unknown-fields. Other x-kubernetes-* keys
    (map-type, embedded-resource, validations) are dropped.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in _SUBSCHEMA_MAPS:
            out[key] = {name: k8s_to_jsonschema(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMA_LISTS:
            out[key] = [k8s_to_jsonschema(sub) for sub in value]
        elif key in _SUBSCHEMA_ONE:
            out[key] = k8s_to_jsonschema(value)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string") and "type" not in node and "anyOf" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("type") == "integer" and node.get("format") in _INT_BOUNDS:
        low, high = _INT_BOUNDS[node["format"]]
        out.setdefault("minimum", low)
        out.setdefault("maximum", high)
    if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "map":
        out["x-list-map-keys"] = node.get("x-kubernetes-list-map-keys", [])
    elif node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def _list_map_keys(validator, keys, instance, schema):
    import jsonschema

    if not isinstance(instance, list) or not keys:
        return
    seen = set()
    for item in instance:
        if isinstance(item, dict):
            key = tuple(repr(item.get(k)) for k in keys)
            if key in seen:
                yield jsonschema.ValidationError(f"duplicate entry for list-map keys {keys}: {({k: item.get(k) for k in keys})}")
            seen.add(key)


@functools.lru_cache(maxsize=None)
def _load_crd(path: str) -> dict[str, Any]:
    import gzip

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    opener = (lambda: open(path, encoding="utf-8")) if Path(path).is_file() else (
        lambda: gzip.open(path + ".gz", "rt", encoding="utf-8"))
    with opener() as fh:
        return yaml.load(fh, Loader=loader)  # noqa: S506 - a safe loader


@functools.lru_cache(maxsize=None)
def _validator(crd_path: str, version: str):
    import jsonschema

    crd = _load_crd(crd_path)
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    if version not in versions:
        raise ValueError(f"{crd_path}: no version {version!r} (has {sorted(versions)})")
    schema = k8s_to_jsonschema(versions[version]["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = _METADATA_SCHEMA
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    cls = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-list-map-keys": _list_map_keys})
    return cls(schema)


def validate_manifest(doc: dict[str, Any], crd_dir: str | Path) -> list[str]:
    """Errors of a ray.io manifest against its CRD schema, one line each ("path: message"); [] when valid."""
    api_version = doc.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    kind = doc.get("kind")
    if group != "ray.io" or kind not in CRD_FILES:
        raise ValueError(f"no KubeRay CRD for apiVersion={api_version!r} kind={kind!r}")
    validator = _validator(str(Path(crd_dir) / CRD_FILES[kind]), version)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


# ---------------------------------------------------------------------------------------------
# walking the kustomize tree


def kustomize_dirs(root: str | Path = REPO_ROOT) -> list[Path]:
    """kuberay/base and every kuberay/overlays/<name> holding a kustomization."""
    base = Path(root) / KUBERAY_DIR
    dirs = [base / "base"] + sorted(p for p in (base / "overlays").glob("*") if p.is_dir())
    return [d for d in dirs if any((d / f).is_file() for f in kustomize.KUSTOMIZATION_FILES)]


def cluster_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The RayClusterSpec of a RayCluster, RayJob (rayClusterSpec) or RayService (rayClusterConfig)."""
    spec = doc.get("spec", {})
    return {"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"), "RayService": spec.get("rayClusterConfig")}.get(doc.get("kind"))


def iter_pod_templates(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, pod template) for the head, every worker group and the RayJob submitter."""
    cluster = cluster_spec(doc)
    if cluster:
        yield "head", cluster["headGroupSpec"]["template"]
        for group in cluster.get("workerGroupSpecs", []):
            yield f"worker:{group['groupName']}", group["template"]
    if doc.get("kind") == "RayJob" and doc["spec"].get("submitterPodTemplate"):
        yield "submitter", doc["spec"]["submitterPodTemplate"]


def validate_tree(root: str | Path = REPO_ROOT, crd_dir: str | Path | None = None) -> dict[str, list[str]]:
    """Render base and every overlay; {"<dir>:<Kind>/<name>": errors} for each ray.io resource."""
    crd_dir = crd_dir or find_crd_dir(root)
    if crd_dir is None:
        raise FileNotFoundError("KubeRay CRDs not found: set REASONGUARD_KUBERAY_CRDS")
    results = {}
    for directory in kustomize_dirs(root):
        for doc in kustomize.render(directory):
            if doc.get("apiVersion", "").startswith("ray.io/"):
                label = f"{directory.relative_to(Path(root))}:{doc['kind']}/{doc['metadata']['name']}"
                results[label] = validate_manifest(doc, crd_dir)
    return results


# ---------------------------------------------------------------------------------------------
# CLI


def _cmd_render_rayservice(args: argparse.Namespace) -> int:
    uri = args.working_dir_uri or None
    if args.check:
        drifts = check_serve_configs(args.root, uri)
        for drift in drifts:
            print(f"DRIFT: {drift.target.manifest} is out of date with {drift.target.serve_config}", file=sys.stderr)
            print(drift.diff(), file=sys.stderr)
        if drifts:
            print("run: python -m reasonguard.deploy.kuberay render-rayservice", file=sys.stderr)
            return 1
        print(f"serveConfigV2 up to date in {len(SERVE_TARGETS)} manifest(s)")
        return 0
    changed = write_serve_configs(args.root, uri)
    for path in changed:
        print(f"updated {path}")
    if not changed:
        print("serveConfigV2 already up to date")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    docs = kustomize.render(args.directory)
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False, width=4096))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    results = validate_tree(args.root, args.crd_dir)
    bad = 0
    for label, errors in results.items():
        print(f"{'ok  ' if not errors else 'FAIL'} {label}")
        for err in errors:
            print(f"     {err}")
        bad += bool(errors)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasonguard.deploy.kuberay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)")
    sub = parser.add_subparsers(dest="command", required=True)
    rs = sub.add_parser("render-rayservice", help="regenerate serveConfigV2 from cluster/serve/*.yaml")
    rs.add_argument("--check", action="store_true", help="write nothing; exit 1 when a manifest has drifted")
    rs.add_argument(
        "--working-dir-uri",
        default=DEFAULT_WORKING_DIR_URI,
        help=f"runtime_env.working_dir for the cluster (default {DEFAULT_WORKING_DIR_URI}: the code in the image; '' drops it)",
    )
    rs.set_defaults(func=_cmd_render_rayservice)
    rd = sub.add_parser("render", help="print a kustomize directory rendered by kubectl kustomize")
    rd.add_argument("directory", type=Path)
    rd.set_defaults(func=_cmd_render)
    va = sub.add_parser("validate", help="validate base and overlays against the KubeRay CRDs")
    va.add_argument("--crd-dir", type=Path, default=None, help="default: $REASONGUARD_KUBERAY_CRDS or the vendored CRDs (reasonguard/deploy/crds)")
    va.set_defaults(func=_cmd_validate)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
