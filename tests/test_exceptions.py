"""The error classes: what every error carries, whatever raised it."""

from __future__ import annotations

import pytest

from django_evolink.exceptions import (
    EvolinkConfigurationError,
    EvolinkError,
    EvolinkValidationError,
)


@pytest.mark.parametrize(
    "error",
    [EvolinkError("boom"), EvolinkConfigurationError.missing_api_key(),
     EvolinkValidationError({"prompt": ["Required."]})],
)
def test_every_error_declares_the_task_it_refused(error: EvolinkError) -> None:
    """``exc.task`` is part of the class, ``None`` until a refused submission sets it, so
    ``except EvolinkError as exc: exc.task`` never raises AttributeError."""
    assert error.task is None
    assert "task" in vars(EvolinkError)


def test_the_missing_key_error_is_a_configuration_error() -> None:
    error = EvolinkConfigurationError.missing_api_key()
    assert error.code == "configuration_error"
    assert "EVOLINK_API_KEY" in str(error) and "EVOLINK = {'API_KEY'" in str(error)
