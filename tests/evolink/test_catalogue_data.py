"""The shipped catalogue is what scripts/build_catalogue.py makes of the shared data."""

from __future__ import annotations

import json
from pathlib import Path

from django_evolink.evolink import modelspec
from scripts import build_catalogue

SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "evolink-models.json"


def test_the_shipped_catalogue_and_models_page_are_up_to_date():
    # CI runs with ../shared beside the project: its absence is a failure, not a skip.
    assert SOURCE.is_file(), (
        f"{SOURCE} is missing: the catalogue cannot be checked against Evolink's data. "
        "Put the shared data beside the project (../shared/evolink-models.json)."
    )
    for path, text in build_catalogue.outputs(SOURCE).items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is stale: run `make catalogue` and commit the result"
        )


def test_every_model_of_the_data_is_in_the_catalogue_with_its_kind():
    source = json.loads(SOURCE.read_text(encoding="utf-8"))["models"]
    shipped = modelspec.load().models
    assert set(shipped) == set(source)
    assert {name: spec.kind for name, spec in shipped.items()} == {
        name: model["kind"] for name, model in source.items()}


def test_token_limits_are_not_character_limits():
    spec = modelspec.load().models["doubao-seedream-4.0"]
    assert spec.prompt_max_tokens == 2000 and spec.prompt_max_chars is None
    assert "maxLength" not in spec.properties["prompt"]
    assert spec.problems({"prompt": "x" * 5000}) == []  # left to Evolink
    # stated in characters: checked
    z = modelspec.load().models["z-image-turbo"]
    assert z.prompt_max_chars == 2000
    assert [p.code for p in z.problems({"prompt": "x" * 2001})] == ["max_length"]


def test_the_seed_wins_for_its_model():
    spec = modelspec.load().models["wan2.5-image-to-image"]
    assert spec.prompt_max_chars == 2000
    assert (spec.min_images, spec.max_images, spec.n_min, spec.n_max) == (1, 2, 1, 4)
    assert (spec.images.min_side, spec.images.max_side, spec.images.max_file_mb) == (
        384, 5000, 10)
    assert spec.images.pillow_formats == ("JPEG", "PNG", "BMP", "WEBP")
    assert spec.images.no_alpha and spec.images.alpha_formats == ("PNG",)


def test_unknown_limits_are_recorded_not_invented():
    qwen = modelspec.load().models["qwen-image-3.0"]
    assert "max_total_pixels" not in qwen.size
    assert any("cut" in item for item in qwen.unknown)
    gpt = modelspec.load().models["gpt-image-2"]
    assert "max_total_pixels" not in gpt.size and any("budget" in u for u in gpt.unknown)


def test_a_catalogue_with_a_broken_schema_is_refused_when_read():
    data = json.loads(modelspec.CATALOGUE_FILE.read_text(encoding="utf-8"))
    data["models"]["wan2.5-text-to-image"]["body"]["properties"]["n"]["type"] = "int"
    try:
        modelspec.parse(data)
    except Exception as exc:  # jsonschema's SchemaError
        assert "int" in str(exc)
    else:
        raise AssertionError("a broken schema was accepted")
