"""Writes tests/data/kuberay_rayjob_v1_schema.json: the openAPIV3Schema of KubeRay's RayJob CRD (version v1),
trimmed to the fields that deploy/kuberay-rayjob.yaml uses, so that the test can validate the manifest against the
real schema without vendoring 1.4 MB of it.

Every object schema on the manifest's paths keeps all its property names (so that a misspelt or unknown key is
an error) with the subschemas of the unused ones replaced by TRIMMED; descriptions are dropped. Rerun after adding
a field to the manifest (the test says when), against the CRD of the KubeRay release you target:

    git -C KUBERAY show v1.7.0:ray-operator/config/crd/bases/ray.io_rayjobs.yaml > /tmp/ray.io_rayjobs.yaml
    python tests/data/trim_kuberay_crd.py /tmp/ray.io_rayjobs.yaml v1.7.0 COMMIT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "kuberay-rayjob.yaml"
OUT = Path(__file__).with_name("kuberay_rayjob_v1_schema.json")
TRIMMED = {"$comment": "trimmed"}  # a subschema the manifest does not use
DROPPED = {"description"}


def merged(values: list) -> object:
    """One value with every key that any of `values` (the items of a list) has, for trimming the items' schema."""
    dicts = [v for v in values if isinstance(v, dict)]
    if not dicts:
        return values[0] if values else None
    keys = {k for d in dicts for k in d}
    return {k: merged([d[k] for d in dicts if k in d]) for k in keys}


def trim(schema: dict, value: object) -> dict:
    out = {k: v for k, v in schema.items() if k not in DROPPED | {"properties", "items", "additionalProperties"}}
    if isinstance(value, dict) and "properties" in schema:
        out["properties"] = {
            name: trim(sub, value[name]) if name in value else TRIMMED for name, sub in schema["properties"].items()
        }
    elif "properties" in schema:
        out["properties"] = {name: TRIMMED for name in schema["properties"]}
    if isinstance(schema.get("additionalProperties"), dict):
        values = list(value.values()) if isinstance(value, dict) else []
        out["additionalProperties"] = trim(schema["additionalProperties"], merged(values)) if values else TRIMMED
    elif "additionalProperties" in schema:
        out["additionalProperties"] = schema["additionalProperties"]
    if "items" in schema:
        out["items"] = trim(schema["items"], merged(value)) if isinstance(value, list) and value else TRIMMED
    for keyword in ("anyOf", "allOf", "oneOf"):
        if keyword in schema:
            out[keyword] = [trim(sub, value) for sub in schema[keyword]]
    return out


def main(crd_path: str, tag: str, commit: str) -> None:
    crd = yaml.safe_load(Path(crd_path).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    rayjob = next(d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d.get("kind") == "RayJob")
    document = {
        "source": {
            "repository": "https://github.com/ray-project/kuberay",
            "path": "ray-operator/config/crd/bases/ray.io_rayjobs.yaml",
            "tag": tag,
            "commit": commit,
            "license": "Apache-2.0",
            "trimmed_by": "tests/data/trim_kuberay_crd.py",
        },
        "group": crd["spec"]["group"],
        "version": version["name"],
        "kind": crd["spec"]["names"]["kind"],
        "openAPIV3Schema": trim(version["schema"]["openAPIV3Schema"], rayjob),
    }
    OUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main(*sys.argv[1:])
