"""Cases generated from the catalogue: a valid create body per model, one invalid value
per constrained parameter, and an input image within a model's limits.

Everything here is derived from ``catalogue.json``: a model added to the data is covered
by the per-model tests (tests/catalogue/) and the validation benchmark without new code.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

from PIL import Image

from django_evolink.evolink.modelspec import ImageLimits, ModelSpec, load

#: Every image model of the shipped catalogue, by name.
IMAGE_MODELS: list[str] = sorted(spec.name for spec in load().image_models)
#: A public address written as an IP literal: accepted without a DNS lookup.
PUBLIC_URL = "https://93.184.215.14/photo.png"
#: A task id of an earlier task (Midjourney's follow-up models name one).
EARLIER_TASK = "task-unified-1757156493-imcg5zqt"


def spec_of(name: str) -> ModelSpec:
    return load().models[name]


def _example(name: str, schema: dict[str, Any], url: Callable[[], str]) -> Any:
    """A valid value for one parameter's JSON Schema."""
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:  # size: a ratio when there are some, else pixels
        ratios = next((alt["enum"] for alt in schema["anyOf"] if "enum" in alt), None)
        return ratios[0] if ratios else "1024x1024"
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "uri":
            return url()
        return {"prompt": "a red fox in the snow", "task_id": EARLIER_TASK,
                "negative_prompt": "blurry"}.get(name, "x")
    if kind == "integer":
        return schema.get("minimum", 0)
    if kind == "number":
        return schema.get("minimum", 1.0)
    if kind == "boolean":
        return not schema.get("default", False)
    if kind == "array":
        low = schema.get("minItems", 0)
        return [_example(name, schema.get("items", {}), url) for _ in range(max(low, 1))]
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: _example(key, props[key], url) for key in schema.get("required", ())}
    return "x"


def valid_body(spec: ModelSpec, url: Callable[[], str] = lambda: PUBLIC_URL) -> dict[str, Any]:
    """A body the model takes: every parameter with a valid value (``n`` at its least,
    image URLs from ``url``), in the docs' order; the model's cross-parameter rules hold."""
    body = {}
    for name, schema in spec.properties.items():
        if name == "mask_url":
            continue  # a mask must match its image; left out of the generic case
        body[name] = _example(name, schema, url)
    return body


def _invalid(name: str, schema: dict[str, Any]) -> Any:
    """One value the parameter's schema refuses (the most specific constraint)."""
    if "enum" in schema:
        return "not-a-choice" if schema.get("type") != "integer" else max(schema["enum"]) + 1
    if "anyOf" in schema:
        return "999:1"
    if "maximum" in schema:
        return schema["maximum"] + 1
    if "minimum" in schema:
        return schema["minimum"] - 1
    if "maxLength" in schema:
        return "x" * (schema["maxLength"] + 1)
    if "maxItems" in schema:
        return [PUBLIC_URL] * (schema["maxItems"] + 1)
    if schema.get("minItems"):
        return []
    return 42 if schema.get("type") != "integer" else "many"


def invalid_cases(spec: ModelSpec) -> Iterator[tuple[str, Any]]:
    """``(parameter, invalid value)`` for every parameter of ``spec``."""
    for name, schema in spec.properties.items():
        yield name, _invalid(name, schema)


def fitting_image(limits: ImageLimits | None) -> bytes:
    """A real image within ``limits`` (sides, pixels, format): 1024 px square if allowed."""
    side = 1024
    if limits is not None:
        if limits.max_side:
            side = min(side, limits.max_side)
        if limits.min_side:
            side = max(side, limits.min_side)
    formats = (limits.pillow_formats if limits else None) or ("JPEG",)
    fmt = "JPEG" if "JPEG" in formats else formats[0]
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (40, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()
