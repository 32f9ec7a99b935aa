"""Validate our responses against OpenAI's official schemas (openapi/openai-batch-spec.json)."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC = json.loads((Path(__file__).resolve().parent.parent / "openapi" / "openai-batch-spec.json").read_text())
_REGISTRY = Registry().with_resource("spec", Resource.opaque(SPEC))


def assert_matches(schema_name: str, instance: object) -> None:
    schema = {"$ref": f"spec#/components/schemas/{schema_name}"}
    validator = Draft202012Validator(schema, registry=_REGISTRY)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{schema_name} mismatch: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
