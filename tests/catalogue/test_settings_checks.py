"""EVOLINK['MODELS'] and DEFAULT_MODEL: the allow-list and its system checks (E006)."""

from __future__ import annotations

import pytest
from django.core.checks import Tags, run_checks

from django_evolink.evolink import catalogue
from django_evolink.exceptions import EvolinkValidationError


def e006(settings, **values):
    settings.EVOLINK = {**settings.EVOLINK, **values}
    return [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "django_evolink.E006"]


def test_every_image_model_and_a_default_pass(settings):
    assert e006(settings, MODELS=None) == []
    assert e006(settings, MODELS=["wan2.5-text-to-image", "wan2.5-image-to-image"]) == []


def test_unknown_name_is_an_error_with_a_close_match(settings):
    [error] = e006(settings, MODELS=["wan2.5-image-to-image", "wan2.5-txt-to-image"])
    assert "'wan2.5-txt-to-image'" in error.msg
    assert "wan2.5-text-to-image" in error.hint


def test_video_model_is_an_error_saying_so(settings):
    [error] = e006(settings, MODELS=["wan2.5-image-to-image", "MiniMax-Hailuo-02"])
    assert "video model" in error.hint


@pytest.mark.parametrize("value", ["wan2.5-image-to-image", [1]])
def test_models_must_be_a_list_of_names(settings, value):
    [error] = e006(settings, MODELS=value)
    assert "list of model names" in error.msg


def test_default_model_unknown_or_not_allowed(settings):
    [error] = e006(settings, DEFAULT_MODEL="nope", MODELS=None)
    assert "'nope'" in error.msg and error.hint
    [error] = e006(settings, DEFAULT_MODEL="wan2.5-image-to-image",
                   MODELS=["wan2.5-text-to-image"])
    assert "not in EVOLINK['MODELS']" in error.msg


def test_allow_list_decides_what_get_spec_takes(settings):
    settings.EVOLINK = {**settings.EVOLINK, "MODELS": ["wan2.5-text-to-image"]}
    assert catalogue.get_spec("wan2.5-text-to-image").name == "wan2.5-text-to-image"
    with pytest.raises(EvolinkValidationError) as info:
        catalogue.get_spec("z-image-turbo")
    assert info.value.errors["model"] == [
        "Model 'z-image-turbo' is not allowed on this site. Allowed: wan2.5-text-to-image."]
    with pytest.raises(EvolinkValidationError) as info:
        catalogue.get_spec("MiniMax-Hailuo-02")
    assert "is a video model; only image models can be used here" in (
        info.value.errors["model"][0])
