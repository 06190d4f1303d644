"""Build the model catalogue shipped in the package from Evolink's parameter definitions.

``make catalogue`` runs it::

    python scripts/build_catalogue.py [../shared/evolink-models.json]

It reads ``evolink-models.json`` (facts extracted from Evolink's published parameter
definitions, see its ``meta``) and writes:

* ``django_evolink/evolink/catalogue.json``: one record per model (every kind, so video
  and audio can follow), each with a JSON Schema of its request body and the facts that
  JSON Schema cannot state (image limits, ``size`` pixel rules, cross-parameter rules,
  what is unknown);
* ``docs/models.md``: the models page of the documentation.

The data is read critically:

* a ``maxLength`` that the docs' prose counts in tokens is not a character limit: it is
  kept as ``max_tokens`` (shown, left to Evolink) and removed from the JSON Schema;
  ``maxLength`` without a unit, or stated in characters, is a character limit;
* facts stated only in prose (``from_description``) become image limits, ``size`` rules
  or cross-parameter rules; prose that was cut in the source leaves a limit unknown, and
  an unknown limit is recorded as such, never invented;
* for ``wan2.5-image-to-image`` the seed document wins (:data:`SEED`).

``tests/evolink/test_catalogue_data.py`` fails when the shipped files are stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "evolink-models.json"
CATALOGUE = ROOT / "django_evolink" / "evolink" / "catalogue.json"
MODELS_PAGE = ROOT / "docs" / "models.md"

#: Format version of catalogue.json (bump when the record layout changes).
FORMAT = 1
#: JSON Schema keys copied from the source as they are.
SCHEMA_KEYS = (
    "type", "format", "enum", "default", "minimum", "maximum", "minLength", "maxLength",
    "minItems", "maxItems",
)
#: ``WIDTHxHEIGHT`` (``*`` is accepted as the separator too), as a JSON Schema pattern.
PIXEL_PATTERN = "^[1-9][0-9]{0,5}[xX*][1-9][0-9]{0,5}$"
#: Facts of the image limits copied from ``image_urls.from_description``.
IMAGE_FACTS = (
    "max_file_mb", "formats", "min_side_px", "max_side_px", "min_side_gt_px",
    "min_total_pixels", "max_total_pixels", "aspect_ratio_range", "alpha",
)
#: Facts of ``size`` copied from its ``from_description``.
SIZE_FACTS = (
    "min_side_px", "max_side_px", "min_side_gt_px", "min_total_pixels", "max_total_pixels",
    "aspect_ratio_range", "side_multiple_of",
)

#: wan2.5-image-to-image: where the seed document (Japanese) wins over the data.
SEED = {
    "model": "wan2.5-image-to-image",
    # The seed says "2000 tokens"; the product enforces 2000 characters for it
    # (evolink-api.md), as it always has.
    "prompt_max_chars": 2000,
    # "png (no transparency channel)": the seed names png.
    "alpha_formats": ["png"],
    "note": "The seed (Japanese) document wins; the Spanish page's 5 images of 360-4096 px "
            "is not followed.",
}


def _schema(param: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one source parameter (nested ``required: true`` -> ``required``)."""
    out = {k: param[k] for k in SCHEMA_KEYS if k in param}
    if isinstance(out.get("type"), str) and "|" in out["type"]:  # "integer|string"
        out["type"] = out["type"].split("|")
    if "items" in param:
        out["items"] = _schema(param["items"])
    if "properties" in param:
        props = param["properties"]
        out["properties"] = {name: _schema(sub) for name, sub in props.items()}
        required = [name for name, sub in props.items() if sub.get("required")]
        if required:
            out["required"] = required
    return out


def _nested_notes(name: str, param: dict[str, Any], notes: list[str]) -> None:
    """Prose facts of nested parameters: shown in the docs, left to Evolink."""
    for sub, spec in (param.get("properties") or {}).items():
        path = f"{name}.{sub}"
        facts = spec.get("from_description")
        if facts:
            notes.append(f"{path}: {_facts_text(facts)} (not checked locally)")
        _nested_notes(path, spec, notes)


def _facts_text(facts: dict[str, Any]) -> str:
    return "; ".join(f"{k.replace('_', ' ')} {json.dumps(v)}" for k, v in sorted(facts.items()))


def _text_limits(schema: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Split a string's length limits into characters (checked) and tokens (shown)."""
    limits: dict[str, Any] = {}
    stated = facts.get("length_limits") or []
    units = {item["unit"]: item["value"] for item in stated}
    if "characters" in units:
        limits["max_chars"] = units["characters"]
    elif "tokens" in units:
        limits["max_tokens"] = units["tokens"]
    elif "maxLength" in schema:  # JSON Schema's maxLength counts characters
        limits["max_chars"] = schema["maxLength"]
    if "bytes" in units:
        limits["max_bytes"] = units["bytes"]
    schema.pop("maxLength", None)
    if "max_chars" in limits:
        schema["maxLength"] = limits["max_chars"]
    if "max_tokens" in limits:
        schema["x-max-tokens"] = limits["max_tokens"]
    return limits


def _resolution_table(params: dict[str, Any]) -> dict[str, Any] | None:
    """The output pixel sizes by quality/resolution and aspect ratio, when stated."""
    for name, param in params.items():
        table = (param.get("from_description") or {}).get("resolution_table")
        if not table:
            continue
        keys = set(table)
        by = next(
            (other for other, spec in params.items() if keys <= set(spec.get("enum") or ())),
            name,
        )
        return {"by": by, "table": table}
    return None


def normalize(source: dict[str, Any], *, seed: dict[str, Any] | None = None) -> dict[str, Any]:
    """One catalogue record from one model of ``evolink-models.json``."""
    name = source["model"]
    params: dict[str, Any] = source.get("params") or {}
    required = [p for p in source.get("required") or [] if p in params]
    record: dict[str, Any] = {
        "name": name,
        "kind": source["kind"],
        "path": source["path"],
        "docs": source.get("docs", ""),
    }
    properties: dict[str, Any] = {}
    text: dict[str, Any] = {}
    rules: list[dict[str, Any]] = []
    unknown: list[str] = []
    notes: list[str] = []
    images: dict[str, Any] | None = None
    size: dict[str, Any] | None = None
    for pname, param in params.items():
        facts = dict(param.get("from_description") or {})
        schema = _schema(param)
        if "default" in facts and "default" not in schema:
            schema["default"] = facts["default"]
        if param.get("type") == "string" and ("length_limits" in facts or "maxLength" in schema):
            limits = _text_limits(schema, facts)
            if limits:
                text[pname] = limits
        if pname in required and param.get("type") == "string":
            schema["minLength"] = max(1, schema.get("minLength", 0))
            schema["pattern"] = "\\S"  # not only white space
        if pname == "n":
            low = schema.pop("minimum", facts.get("min"))
            high = schema.pop("maximum", facts.get("max"))
            if schema.get("enum"):
                low, high = min(schema["enum"]), max(schema["enum"])
                del schema["enum"]
            schema["minimum"] = 1 if low is None else low
            if high is not None:
                schema["maximum"] = high
            else:
                unknown.append("n: the largest number of images")
            if facts.get("reference_plus_generated_max"):
                rules.append({"rule": "images_plus_n_max",
                              "max": facts["reference_plus_generated_max"]})
        elif pname == "image_urls":
            count = facts.get("count") or {}
            low = schema.get("minItems", count.get("min") if pname in required else 0)
            low = max(low or 0, 1 if pname in required else 0)
            high = schema.get("maxItems", count.get("max"))
            schema["minItems"] = low
            if high is not None:
                schema["maxItems"] = high
            else:
                unknown.append("image_urls: the largest number of images")
            images = {"param": pname, "min": low, "max": high}
            images.update({k: facts[k] for k in IMAGE_FACTS if k in facts})
            if "formats" not in images:
                unknown.append("image_urls: the image formats (any readable image is taken)")
            if "max_file_mb" not in images:
                unknown.append("image_urls: the largest file size")
            for key in ("max_real_person_images", "base64_allowed"):
                if key in facts:
                    notes.append(f"image_urls: {key.replace('_', ' ')} {json.dumps(facts[key])}"
                                 " (not checked locally)")
        elif pname == "size":
            ratios = schema.get("enum") or facts.get("ratios")
            size = {"ratios": list(ratios or []),
                    "pixels": bool(facts.get("pixel_format_supported"))}
            size.update({k: facts[k] for k in SIZE_FACTS if k in facts})
            if size["pixels"]:
                schema.pop("enum", None)
                alternatives: list[dict[str, Any]] = [{"pattern": PIXEL_PATTERN}]
                if ratios:
                    alternatives.insert(0, {"enum": list(ratios)})
                schema["anyOf"] = alternatives
            elif ratios and "enum" not in schema:
                schema["enum"] = list(ratios)
            for key, what in (("max_total_pixels_truncated_in_source", "the largest pixel count"),
                              ("pixel_budget_truncated_in_source", "the pixel budget")):
                if facts.get(key):
                    unknown.append(f"size: {what} (the docs' text is cut)")
            if facts.get("requires_n"):
                rules.append({"rule": "only_with", "param": "size",
                              "requires": {"n": facts["requires_n"]}})
        elif pname == "background" and facts.get("when_transparent"):
            when = facts["when_transparent"]
            rule: dict[str, Any] = {"rule": "when_value", "param": pname, "value": "transparent"}
            formats = when.get("output_formats_allowed") or (
                [when["output_format"]] if "output_format" in when else None)
            if formats:
                rule["output_format"] = formats
            if "input_image_count" in when:
                rule["image_count"] = when["input_image_count"]
            rules.append(rule)
            if "input_alpha" in when or "input_formats" in when:
                notes.append("background transparent: the input image must be a png with "
                             "transparency (not checked locally)")
        elif facts:
            leftover = {k: v for k, v in facts.items()
                        if k not in ("length_limits", "default", "resolution_table", "ratios")}
            if leftover:
                notes.append(f"{pname}: {_facts_text(leftover)} (not checked locally)")
        _nested_notes(pname, param, notes)
        properties[pname] = schema
    body: dict[str, Any] = {"type": "object", "properties": properties,
                            "additionalProperties": False}
    if required:
        body["required"] = required
    record["body"] = body
    record["images"] = images
    record["size"] = size
    record["text"] = text
    record["resolutions"] = _resolution_table(params)
    record["rules"] = rules
    if seed:
        record["text"].setdefault("prompt", {})
        record["text"]["prompt"] = {"max_chars": seed["prompt_max_chars"]}
        properties["prompt"].pop("x-max-tokens", None)
        properties["prompt"]["maxLength"] = seed["prompt_max_chars"]
        if images is not None:
            images["alpha_formats"] = seed["alpha_formats"]
        notes.append(seed["note"])
    record["unknown"] = unknown
    record["notes"] = notes
    return record


def build(source: dict[str, Any]) -> dict[str, Any]:
    """The whole catalogue from the parsed ``evolink-models.json``."""
    meta = source.get("meta") or {}
    models = {
        name: normalize(model, seed=SEED if name == SEED["model"] else None)
        for name, model in sorted(source["models"].items())
    }
    return {
        "format": FORMAT,
        "source": {
            "repo": (meta.get("source") or {}).get("repo"),
            "commit": (meta.get("source") or {}).get("commit"),
            "generated": meta.get("generated"),
        },
        "models": models,
    }


def dumps(catalogue: dict[str, Any]) -> str:
    """The text of catalogue.json: one model per line (readable diffs), parameters in the
    order of Evolink's docs (the order in which messages and forms list them)."""
    head = {k: v for k, v in catalogue.items() if k != "models"}
    lines = [json.dumps(head, ensure_ascii=False)[:-1] + ', "models": {']
    rows = [f"{json.dumps(name)}: {json.dumps(model, ensure_ascii=False)}"
            for name, model in catalogue["models"].items()]
    lines.append(",\n".join(rows))
    lines.append("}}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ docs page --
def _allowed(schema: dict[str, Any]) -> str:
    parts = []
    if "enum" in schema:
        parts.append(", ".join(f"`{v}`" for v in schema["enum"]))
    if "anyOf" in schema:
        ratios = next((a["enum"] for a in schema["anyOf"] if "enum" in a), None)
        if ratios:
            parts.append(", ".join(f"`{v}`" for v in ratios))
        parts.append("`WIDTHxHEIGHT`")
    if "minimum" in schema or "maximum" in schema:
        parts.append(f"{schema.get('minimum', '…')} to {schema.get('maximum', '…')}")
    if "minItems" in schema or "maxItems" in schema:
        parts.append(f"{schema.get('minItems', 0)} to {schema.get('maxItems', '?')} items")
    if "maxLength" in schema:
        parts.append(f"at most {schema['maxLength']} characters")
    if "x-max-tokens" in schema:
        parts.append(f"about {schema['x-max-tokens']} tokens (approximate, checked by Evolink)")
    if schema.get("properties"):
        parts.append("keys: " + ", ".join(f"`{k}`" for k in schema["properties"]))
    return "; ".join(parts).replace("|", "\\|")


def _image_text(images: dict[str, Any]) -> str:
    parts = [f"{images['min']} to {images['max'] if images['max'] is not None else '?'} images"]
    if "formats" in images:
        parts.append(", ".join(images["formats"]))
    if "max_file_mb" in images:
        parts.append(f"at most {images['max_file_mb']} MB each")
    if "min_side_px" in images or "max_side_px" in images:
        parts.append(f"sides {images.get('min_side_px', 1)} to {images.get('max_side_px', '…')} px")
    if "min_side_gt_px" in images:
        parts.append(f"sides over {images['min_side_gt_px']} px")
    if "min_total_pixels" in images or "max_total_pixels" in images:
        parts.append(f"{images.get('min_total_pixels', 1)} to "
                     f"{images.get('max_total_pixels', '…')} pixels")
    if "aspect_ratio_range" in images:
        low, high = images["aspect_ratio_range"]
        parts.append(f"width/height {low} to {high}")
    if images.get("alpha") == "not_supported":
        which = images.get("alpha_formats")
        parts.append("no transparency" + (f" ({', '.join(which)})" if which else ""))
    return "; ".join(parts)


def _rule_text(rule: dict[str, Any]) -> str:
    if rule["rule"] == "images_plus_n_max":
        return f"reference images + `n` at most {rule['max']}"
    if rule["rule"] == "only_with":
        need = ", ".join(f"`{k}` = {v}" for k, v in rule["requires"].items())
        return f"`{rule['param']}` only with {need}"
    then = []
    if "output_format" in rule:
        then.append("`output_format` " + " or ".join(rule["output_format"]))
    if "image_count" in rule:
        then.append(f"exactly {rule['image_count']} reference image")
    return f"`{rule['param']}` = `{rule['value']}` needs " + " and ".join(then)


def models_page(catalogue: dict[str, Any]) -> str:
    """docs/models.md: every image model, its parameters and limits."""
    models = catalogue["models"]
    images = [m for m in models.values() if m["kind"] == "image"]
    others = [m for m in models.values() if m["kind"] != "image"]
    src = catalogue["source"]
    lines = [
        "<!-- Generated by scripts/build_catalogue.py (make catalogue): do not edit. -->",
        "# Models",
        "",
        f"django-evolink knows {len(images)} image models of Evolink's catalogue. Each is "
        "validated before anything is sent, with the rules below (the JSON Schema of each "
        "request body is served by `GET models/` and printed by `evolink_models --json`).",
        f"Source: Evolink's published parameter definitions ({src['repo']} at "
        f"`{(src['commit'] or '')[:12]}`, extracted {src['generated']}).",
        "",
        "How to read the limits:",
        "",
        "- **characters** limits are checked here; a prompt limit given in **tokens** is "
        "approximate (a token is not a character): it is shown, and left to Evolink;",
        "- image limits (count, MB, formats, pixels, transparency) apply to uploaded files "
        "here and to image URLs in the emulator (Evolink fetches URLs itself);",
        "- **unknown** marks a limit the docs do not state (or whose text was cut): it is "
        "left to Evolink, never invented; **not checked locally** marks a stated fact that "
        "cannot be checked before sending.",
        "",
    ]
    for model in images:
        lines += [f"## {model['name']}", "", f"[Evolink's page]({model['docs']})", ""]
        body = model["body"]
        required = set(body.get("required", ()))
        if body["properties"]:
            lines += ["| parameter | type | required | allowed | default |",
                      "|---|---|---|---|---|"]
            for pname, schema in body["properties"].items():
                default = f"`{json.dumps(schema['default'])}`" if "default" in schema else ""
                lines.append(
                    f"| `{pname}` | {schema.get('type', '')} | "
                    f"{'yes' if pname in required else ''} | {_allowed(schema)} | {default} |"
                )
            lines.append("")
        facts = []
        if model["images"]:
            facts.append("Images: " + _image_text(model["images"]) + ".")
        else:
            facts.append("Text to image: takes no images.")
        size = model["size"]
        if size and size["pixels"]:
            bounds = {k: v for k, v in size.items() if k not in ("ratios", "pixels")}
            facts.append("`size` as `WIDTHxHEIGHT`: "
                         + (_facts_text(bounds) if bounds else "no stated bounds") + ".")
        facts += [f"Rule: {_rule_text(rule)}." for rule in model["rules"]]
        facts += [f"Unknown: {item}." for item in model["unknown"]]
        facts += [f"Note: {item}." for item in model["notes"]]
        lines += [f"- {fact}" for fact in facts] + [""]
    lines += [
        "## Video and audio models",
        "",
        f"The catalogue also holds {len(others)} video and audio models; creating them is "
        "refused with 400 on `model` until video and audio tasks are supported:",
        "",
        ", ".join(f"`{m['name']}`" for m in others) + ".",
        "",
    ]
    return "\n".join(lines)


def outputs(source_path: Path) -> dict[Path, str]:
    """What the script writes, by path (the staleness test compares these)."""
    source = json.loads(source_path.read_text(encoding="utf-8"))
    catalogue = build(source)
    return {CATALOGUE: dumps(catalogue), MODELS_PAGE: models_page(catalogue)}


def main(argv: list[str] | None = None) -> int:
    """Write catalogue.json and docs/models.md from ``evolink-models.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=SOURCE)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"{args.source}: not found (clone the shared data beside the project)",
              file=sys.stderr)
        return 1
    for path, text in outputs(args.source).items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
