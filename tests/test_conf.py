"""Unit tests of the settings lookup (:mod:`django_evolink.conf`)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from rest_framework.permissions import AllowAny, IsAuthenticated

from django_evolink import conf
from django_evolink.evolink.client import get_client
from django_evolink.exceptions import EvolinkConfigurationError

ENV = "EVOLINK_API_KEY"
NON_KEY_DEFAULTS = sorted(k for k in conf.DEFAULTS if k != "API_KEY")


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """No API key in the environment."""
    monkeypatch.delenv(ENV, raising=False)


# --- defaults and explicit values ------------------------------------------------------


@pytest.mark.parametrize("key", NON_KEY_DEFAULTS)
def test_every_key_defaults_when_evolink_is_empty(settings, key: str) -> None:
    """With ``EVOLINK = {}`` every key has its documented default."""
    settings.EVOLINK = {}
    assert conf.get(key) == conf.DEFAULTS[key]


def test_some_defaults_by_value(settings) -> None:
    """Spot-check defaults that the rest of the app relies on."""
    settings.EVOLINK = {}
    assert conf.get("BASE_URL") == "https://api.evolink.ai"
    assert conf.get("CALLBACK_BASE_URL") is None
    assert conf.get("POLL_MIN_INTERVAL") == 5.0
    assert conf.get("POLL_MAX_INTERVAL") == 300.0
    assert conf.get("TASK_TIMEOUT") == 3600.0
    assert conf.get("ALLOW_PRIVATE_URLS") is False
    assert conf.get("TRUST_CALLBACK_BODY") is False


@pytest.mark.parametrize("value", [None, {}])
def test_missing_or_empty_evolink_means_defaults(settings, value: Any) -> None:
    """``EVOLINK = None`` or ``{}`` is the same as not setting it."""
    settings.EVOLINK = value
    assert conf.get("BASE_URL") == "https://api.evolink.ai"
    assert conf.unknown_keys() == []


def test_absent_evolink_setting_means_defaults(settings, no_env_key) -> None:
    """A project without any ``EVOLINK`` setting runs on the defaults."""
    del settings.EVOLINK
    assert conf.get("BASE_URL") == "https://api.evolink.ai"
    assert conf.api_key() is None
    assert conf.unknown_keys() == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("INSTALL_SCHEDULE", False),
        ("POLL_MIN_INTERVAL", 0),
        ("MAX_RETRIES", 0),
        ("CALLBACK_BASE_URL", ""),
        ("RESULTS_PATH", ""),
        ("STORAGE", None),
        ("DEFAULT_MODEL", None),
        ("PERMISSION_CLASSES", []),
    ],
)
def test_explicit_falsy_values_win_over_defaults(settings, key: str, value: Any) -> None:
    """A key present in ``EVOLINK`` wins even when its value is falsy (0, False, "", None)."""
    settings.EVOLINK = {key: value}
    assert conf.get(key) == value
    assert type(conf.get(key)) is type(value)


def test_explicit_values_are_returned_as_given(settings) -> None:
    """Values are not coerced or copied: the very object set is returned."""
    rates = {"evolink_create": "1/second"}
    settings.EVOLINK = {"THROTTLE_RATES": rates, "SWEEP_MINUTES": "5"}
    assert conf.get("THROTTLE_RATES") is rates
    assert conf.get("SWEEP_MINUTES") == "5"


def test_one_key_set_leaves_the_others_at_default(settings) -> None:
    """Setting one key does not replace the defaults of the others."""
    settings.EVOLINK = {"BASE_URL": "https://api.example"}
    assert conf.get("BASE_URL") == "https://api.example"
    assert conf.get("FILES_BASE_URL") == "https://files-api.evolink.ai"


# --- unknown keys and a malformed EVOLINK ----------------------------------------------


@pytest.mark.parametrize("key", ["NOPE", "base_url", "API_KEY ", "", "CALBACK_BASE_URL"])
def test_unknown_key_raises_key_error_naming_it(settings, key: str) -> None:
    """Looking up a key that has no default is a KeyError (a typo in our own code)."""
    with pytest.raises(KeyError) as info:
        conf.get(key)
    assert repr(key) in str(info.value)


def test_unknown_key_raises_even_when_the_site_sets_it(settings) -> None:
    """A typo does not become valid by appearing in ``settings.EVOLINK``."""
    settings.EVOLINK = {"NOPE": 1}
    with pytest.raises(KeyError):
        conf.get("NOPE")


def test_unknown_keys_lists_the_sites_typos_sorted(settings) -> None:
    """``unknown_keys()`` lists the keys of EVOLINK without a default, sorted."""
    settings.EVOLINK = {"ZED": 1, "BASE_URL": "https://x", "CALBACK_BASE_URL": "y", "api_key": 2}
    assert conf.unknown_keys() == ["CALBACK_BASE_URL", "ZED", "api_key"]


def test_unknown_keys_is_empty_when_every_key_is_known(settings) -> None:
    """All known keys set: nothing to report."""
    settings.EVOLINK = dict(conf.DEFAULTS)
    assert conf.unknown_keys() == []


@pytest.mark.parametrize("value", [["API_KEY", "x"], "sk-evo-not-a-dict", (("API_KEY", "x"),), 3])
def test_non_dict_evolink_is_a_configuration_error(settings, value: Any) -> None:
    """A non-dict ``EVOLINK`` is refused with a message showing the right shape."""
    settings.EVOLINK = value
    for call in (lambda: conf.get("BASE_URL"), conf.unknown_keys):
        with pytest.raises(EvolinkConfigurationError) as info:
            call()
        assert "settings.EVOLINK must be a dict" in str(info.value)
        assert "sk-evo-not-a-dict" not in str(info.value)


def test_configuration_error_is_improperly_configured() -> None:
    """Django treats the configuration error as ``ImproperlyConfigured``."""
    assert issubclass(EvolinkConfigurationError, ImproperlyConfigured)


# --- lazy reading ------------------------------------------------------------------------


def test_values_are_read_on_every_access(settings) -> None:
    """Changing ``settings.EVOLINK`` after a read is seen by the next read."""
    settings.EVOLINK = {"POLL_MIN_INTERVAL": 1.0}
    assert conf.get("POLL_MIN_INTERVAL") == 1.0
    settings.EVOLINK = {"POLL_MIN_INTERVAL": 2.0}
    assert conf.get("POLL_MIN_INTERVAL") == 2.0
    settings.EVOLINK = {}
    assert conf.get("POLL_MIN_INTERVAL") == 5.0


def test_in_place_changes_to_the_dict_are_seen(settings) -> None:
    """Even mutating the same dict is seen (nothing is cached from it)."""
    settings.EVOLINK = {}
    assert conf.get("PAGE_SIZE") == 20
    settings.EVOLINK["PAGE_SIZE"] = 7
    assert conf.get("PAGE_SIZE") == 7


def test_override_settings_works_and_is_undone() -> None:
    """``override_settings`` changes the value inside the block only."""
    before = conf.get("BASE_URL")
    with override_settings(EVOLINK={"BASE_URL": "https://inside.example"}):
        assert conf.get("BASE_URL") == "https://inside.example"
    assert conf.get("BASE_URL") == before


@override_settings(EVOLINK={"SWEEP_MINUTES": 9})
def test_override_settings_as_a_decorator() -> None:
    """``override_settings`` as a decorator works too."""
    assert conf.get("SWEEP_MINUTES") == 9


# --- API key -----------------------------------------------------------------------------


def test_api_key_from_settings(settings, no_env_key) -> None:
    """``EVOLINK['API_KEY']`` is the key."""
    settings.EVOLINK = {"API_KEY": "sk-evo-settings"}
    assert conf.api_key() == "sk-evo-settings"
    assert conf.get("API_KEY") == "sk-evo-settings"


def test_settings_key_wins_over_environment(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """When both are set, the settings key is used."""
    monkeypatch.setenv(ENV, "sk-evo-env")
    settings.EVOLINK = {"API_KEY": "sk-evo-settings"}
    assert conf.api_key() == "sk-evo-settings"


@pytest.mark.parametrize("evolink", [{}, {"API_KEY": None}, {"API_KEY": ""}])
def test_missing_none_or_empty_key_falls_back_to_environment(
    settings, monkeypatch: pytest.MonkeyPatch, evolink: dict
) -> None:
    """API_KEY absent, None or "" falls back to $EVOLINK_API_KEY."""
    monkeypatch.setenv(ENV, "sk-evo-env")
    settings.EVOLINK = evolink
    assert conf.api_key() == "sk-evo-env"
    assert conf.get("API_KEY") == "sk-evo-env"


def test_no_key_anywhere_is_none(settings, no_env_key) -> None:
    """No key in settings or environment: None (not "")."""
    settings.EVOLINK = {"API_KEY": None}
    assert conf.api_key() is None


def test_empty_environment_key_is_none(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty $EVOLINK_API_KEY counts as unset: None, never ""."""
    monkeypatch.setenv(ENV, "")
    settings.EVOLINK = {"API_KEY": ""}
    assert conf.api_key() is None


def test_environment_is_read_lazily(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment variable is read on each access, not at import."""
    settings.EVOLINK = {}
    monkeypatch.setenv(ENV, "sk-evo-first")
    assert conf.api_key() == "sk-evo-first"
    monkeypatch.setenv(ENV, "sk-evo-second")
    assert conf.api_key() == "sk-evo-second"
    monkeypatch.delenv(ENV)
    assert conf.api_key() is None


@pytest.mark.parametrize("evolink", [{}, {"API_KEY": None}, {"API_KEY": ""}])
def test_a_missing_key_names_both_ways_to_set_it(settings, no_env_key, evolink: dict) -> None:
    """Without a key, the client's error says to set EVOLINK['API_KEY'] or $EVOLINK_API_KEY
    (the one message: ``EvolinkConfigurationError.missing_api_key``)."""
    settings.EVOLINK = evolink
    with pytest.raises(EvolinkConfigurationError) as info:
        get_client().get_credits()
    message = str(info.value)
    assert "EVOLINK = {'API_KEY'" in message
    assert "EVOLINK_API_KEY" in message
    assert info.value.code == "configuration_error"


def test_missing_key_error_contains_no_key_material(settings, no_env_key) -> None:
    """The error never echoes a key-like value or other settings into the message."""
    settings.EVOLINK = {"API_KEY": "", "BASE_URL": "https://sk-evo-leak.example"}
    with pytest.raises(EvolinkConfigurationError) as info:
        get_client().get_credits()
    assert "sk-evo" not in str(info.value)
    assert "leak" not in str(info.value)


# --- storage and import_classes --------------------------------------------------------


def test_storage_defaults_to_the_default_alias(settings) -> None:
    """``STORAGE`` None selects ``STORAGES['default']``."""
    from django.core.files.storage import storages

    settings.EVOLINK = {}
    assert conf.storage() is storages["default"]


def test_storage_uses_the_named_alias(settings, tmp_path) -> None:
    """``STORAGE`` names an alias of ``settings.STORAGES``."""
    from django.core.files.storage import storages

    settings.STORAGES = {
        **settings.STORAGES,
        "evolink": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "evo")},
        },
    }
    settings.EVOLINK = {"STORAGE": "evolink"}
    assert conf.storage() is storages["evolink"]
    assert conf.storage() is not storages["default"]


def test_import_classes_imports_dotted_paths(settings) -> None:
    """Dotted paths become the classes they name; the default is IsAuthenticated."""
    settings.EVOLINK = {}
    assert conf.import_classes("PERMISSION_CLASSES") == [IsAuthenticated]
    settings.EVOLINK = {"PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"]}
    assert conf.import_classes("PERMISSION_CLASSES") == [AllowAny]


def test_import_classes_passes_classes_through(settings) -> None:
    """Classes given directly are kept, in order, mixed with dotted paths."""
    settings.EVOLINK = {
        "PERMISSION_CLASSES": [AllowAny, "rest_framework.permissions.IsAuthenticated"]
    }
    assert conf.import_classes("PERMISSION_CLASSES") == [AllowAny, IsAuthenticated]


def test_import_classes_of_an_empty_list(settings) -> None:
    """An empty list imports nothing."""
    settings.EVOLINK = {"THROTTLE_CLASSES": []}
    assert conf.import_classes("THROTTLE_CLASSES") == []


def test_import_classes_fails_loudly_on_a_bad_path(settings) -> None:
    """A misspelt dotted path raises ImportError instead of being skipped."""
    settings.EVOLINK = {"PERMISSION_CLASSES": ["rest_framework.permissions.Nope"]}
    with pytest.raises(ImportError):
        conf.import_classes("PERMISSION_CLASSES")
