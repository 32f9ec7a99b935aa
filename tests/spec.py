"""Validate our responses against OpenAI's official schemas (openapi/openai-batch-spec.json)."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC = json.loads((Path(__file__).resolve().parent.parent / "openapi" / "openai-batch-spec.json").read_text())
_REGISTRY = Registry().with_resource("spec", Resource.opaque(SPEC))


_REQUIRED_SOMEWHERE = {name for schema in SPEC["components"]["schemas"].values() for name in schema.get("required", [])}


def _null_for_unset(error) -> bool:
    """The spec types optional fields (output_file_id, *_at, errors, ...) as plain strings/integers, yet its own
    examples, like the hosted API, send them as null when unset: a null where the schema wants another type is
    accepted for a property no schema requires (a required one is still checked)."""
    return error.instance is None and bool(error.path) and error.path[-1] not in _REQUIRED_SOMEWHERE


def assert_matches(schema_name: str, instance: object) -> None:
    schema = {"$ref": f"spec#/components/schemas/{schema_name}"}
    validator = Draft202012Validator(schema, registry=_REGISTRY)
    errors = [e for e in validator.iter_errors(instance) if not _null_for_unset(e)]
    errors.sort(key=lambda e: list(e.path))
    assert not errors, f"{schema_name} mismatch: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
