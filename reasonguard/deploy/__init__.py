"""Deployment helpers: KubeRay manifests (render, validate, drift checks). Pure: pyyaml and jsonschema only."""
