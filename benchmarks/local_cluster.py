"""A multi-node Ray cluster on one machine (cluster/scripts), seen through Ray's state API: worker node N
carries the custom resource `rg_node_N`, so nodes get names ("head", "worker-N") that survive their ids.
Used by benchmarks/chain_local_cluster.py and tests/deploy/test_multinode.py."""

from __future__ import annotations

import json
import urllib.request


def worker_resources(n: int) -> str:
    """RAY_WORKER_RESOURCES for `cluster/scripts/add_local_worker.sh N`: the scripts' rg_worker and the name tag."""
    return json.dumps({"rg_worker": 1, f"rg_node_{n}": 1})


def state(address: str, what: str, limit: int = 10000) -> list[dict]:
    """Ray's state API at the dashboard `address`: "nodes", "actors", ... with details, dead ones included."""
    with urllib.request.urlopen(f"{address}/api/v0/{what}?detail=1&limit={limit}", timeout=60) as resp:
        return json.loads(resp.read())["data"]["result"]["result"]


def node_names(address: str, alive_only: bool = False) -> dict[str, str]:
    """node_id -> "head" | "worker-N" ("?" for a node started without the tag)."""
    names = {}
    for n in state(address, "nodes"):
        if alive_only and n["state"] != "ALIVE":
            continue
        tags = [k for k in n["resources_total"] if k.startswith("rg_node_")]
        names[n["node_id"]] = "head" if n["is_head_node"] else ("worker-" + tags[0].split("_")[-1] if tags else "?")
    return names
