"""Settings lookup and the system checks."""

import pytest
from django.core import checks
from django.core.checks import Tags, run_checks

from django_evolink import checks as checks_module
from django_evolink import conf
from django_evolink.evolink.client import get_client
from django_evolink.exceptions import EvolinkConfigurationError


def ids(settings_obj=None):
    # only django-evolink's own (compatibility-tagged) checks: model checks touch the database
    messages = run_checks(tags=[Tags.compatibility])
    return sorted({m.id for m in messages if m.id and m.id.startswith("django_evolink.")})


def test_defaults_and_override(settings):
    assert conf.get("BASE_URL") == "https://api.evolink.test"
    settings.EVOLINK = {}
    assert conf.get("BASE_URL") == "https://api.evolink.ai"
    assert conf.get("FILES_BASE_URL") == "https://files-api.evolink.ai"
    assert conf.get("CALLBACK_BASE_URL") is None and conf.get("ALLOW_PRIVATE_URLS") is False
    with pytest.raises(KeyError):
        conf.get("NOPE")


def test_api_key_falls_back_to_environment(settings, monkeypatch):
    settings.EVOLINK = {}
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    assert conf.api_key() is None
    with pytest.raises(EvolinkConfigurationError) as info:
        get_client().get_credits()  # the one "no API key" error names every way to set it
    assert "EVOLINK_API_KEY" in str(info.value) and "{'API_KEY'" in str(info.value)
    assert "EvolinkClient(api_key=...)" in str(info.value)
    monkeypatch.setenv("EVOLINK_API_KEY", "sk-evo-from-env")
    assert conf.api_key() == "sk-evo-from-env"
    settings.EVOLINK = {"API_KEY": "sk-evo-from-settings"}
    assert conf.api_key() == "sk-evo-from-settings"


def test_clean_settings_have_no_messages():
    assert [i for i in ids() if i not in ("django_evolink.W004",)] == []


def test_missing_key_warns(settings, monkeypatch):
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    settings.EVOLINK = {}
    messages = [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "django_evolink.W001"]
    assert messages and "EVOLINK_API_KEY" in messages[0].hint


def test_unknown_key_warns(settings):
    settings.EVOLINK = {**settings.EVOLINK, "CALBACK_BASE_URL": "https://x.example"}
    messages = [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "django_evolink.W002"]
    assert messages and "CALBACK_BASE_URL" in messages[0].msg


@pytest.mark.parametrize(("url", "check_id"), [
    ("http://www.example.com", "django_evolink.E002"),
    ("https://127.0.0.1:8000", "django_evolink.E003"),
    ("https://192.168.1.5", "django_evolink.E003"),
    ("https://localhost", "django_evolink.E003"),
])
def test_bad_callback_origin(settings, url, check_id):
    settings.EVOLINK = {**settings.EVOLINK, "CALLBACK_BASE_URL": url}
    assert check_id in ids()
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": True}
    assert check_id not in ids()


def test_good_callback_origin(settings):
    settings.EVOLINK = {**settings.EVOLINK, "CALLBACK_BASE_URL": "https://www.example.com"}
    assert not {"django_evolink.E002", "django_evolink.E003"} & set(ids())


def test_not_a_dict(settings):
    settings.EVOLINK = ["API_KEY"]
    assert "django_evolink.E001" in ids()


@pytest.mark.parametrize(("key", "value"), [("READ_TIMEOUT", "30"), ("POLL_BATCH_SIZE", 0),
                                            ("MAX_RETRIES", -1), ("UPLOAD_BACKEND", "s3"),
                                            ("WATCH_POLL_INTERVAL", "2"),
                                            ("EVENTS_MAX_SECONDS", -1),
                                            ("EVENTS_CHANNEL", "carrier-pigeon"),
                                            ("EVENTS_CHANNEL", "redis")])
def test_bad_values(settings, key, value):
    settings.EVOLINK = {**settings.EVOLINK, key: value}
    assert "django_evolink.E005" in ids()


def test_q_cluster_retry_not_above_timeout(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 300, "retry": 60}
    assert "django_evolink.W003" in ids()


def test_every_setting_is_documented():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()
    missing = [k for k in conf.DEFAULTS if f"| `{k}` |" not in text]
    assert missing == [], f"document these settings in docs/settings.md: {missing}"


def test_explicit_none_api_key_falls_back_to_environment(settings, monkeypatch):
    monkeypatch.setenv("EVOLINK_API_KEY", "sk-evo-env-only")
    settings.EVOLINK = {"API_KEY": None}
    assert conf.api_key() == "sk-evo-env-only"
    assert "django_evolink.W001" not in ids()


def _messages(check_id):
    return [m for m in run_checks(tags=[Tags.compatibility]) if m.id == check_id]


def test_http_callback_allowed_by_private_urls_warns_that_only_the_emulator_accepts_it(settings):
    settings.EVOLINK = {**settings.EVOLINK, "CALLBACK_BASE_URL": "http://127.0.0.1:8000",
                        "ALLOW_PRIVATE_URLS": True}
    [warning] = _messages("django_evolink.W010")
    assert warning.level == checks.WARNING  # a warning, not an error: the emulator takes it
    assert "emulator" in warning.hint and "Evolink refuses" in warning.hint
    settings.EVOLINK = {**settings.EVOLINK, "CALLBACK_BASE_URL": "https://127.0.0.1:8000"}
    assert _messages("django_evolink.W010") == []


@pytest.mark.parametrize(("media_root", "media_url"), [("", "/media/"), ("/srv/media", ""),
                                                       ("", "")])
def test_results_that_would_not_be_served_warn(settings, media_root, media_url):
    settings.MEDIA_ROOT, settings.MEDIA_URL = media_root, media_url
    [warning] = _messages("django_evolink.W011")
    assert "MEDIA_URL" in warning.hint and "static(settings.MEDIA_URL" in warning.hint


def test_results_whose_urls_fall_under_the_apps_prefix_warn(settings):
    settings.MEDIA_URL = "/evolink/"  # tests/urls.py routes the app at /evolink/
    [warning] = _messages("django_evolink.W012")
    assert "/evolink/evolink/results/1/0.png" in warning.msg
    settings.MEDIA_URL = "https://cdn.example.com/evolink/"  # another host: fine
    assert _messages("django_evolink.W012") == []
    settings.MEDIA_URL = "/media/"
    assert _messages("django_evolink.W011") == _messages("django_evolink.W012") == []


def test_q_cluster_without_timeout_or_retry_warns(settings):
    settings.Q_CLUSTER = {"name": "site", "orm": "default"}  # README's old example
    [warning] = _messages("django_evolink.W013")
    assert "'timeout'" in warning.msg and "'retry'" in warning.hint
    settings.Q_CLUSTER = {"name": "site", "orm": "default", "timeout": 300}  # retry: 60
    [warning] = _messages("django_evolink.W003")
    assert "(60)" in warning.msg and "retry=360" in warning.hint


def test_q_cluster_timeout_shorter_than_a_job_warns(settings):
    needed = checks_module.longest_job_seconds()
    # tests' MODELS: n <= 4, fetched side by side: one round of CONNECT 5 s + DOWNLOAD 30 s
    assert needed == 5 + 30
    settings.Q_CLUSTER = {"name": "site", "orm": "default", "timeout": needed - 1,
                          "retry": needed + 60}
    [warning] = _messages("django_evolink.W013")
    assert f"({needed} s" in warning.msg and "DOWNLOAD_TIMEOUT" in warning.hint
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": needed}
    assert _messages("django_evolink.W013") == []


def test_a_job_of_many_images_takes_a_round_per_parallel_batch(settings):
    """doubao-seedream-4.0 makes up to 15 images: 4 rounds of 4 parallel fetches."""
    settings.EVOLINK = {**settings.EVOLINK, "MODELS": ["doubao-seedream-4.0"],
                        "DEFAULT_MODEL": "doubao-seedream-4.0"}
    assert checks_module.longest_job_seconds() == 4 * (5 + 30)
    settings.Q_CLUSTER = {"name": "site", "orm": "default", "timeout": 139, "retry": 200}
    [warning] = _messages("django_evolink.W013")
    assert "(140 s" in warning.msg and "4 at a time" in warning.msg


@pytest.mark.parametrize("values, words", [
    ({"LIMITS": {"ACTIVE_TASKS_PER_USER": -1}}, "whole number of tasks"),
    ({"LIMITS": {"CREDITS_PER_DAY": "lots"}}, "number of credits"),
    ({"LIMITS": {"CREDIT_PER_DAY": 5}}, "Unknown limit 'CREDIT_PER_DAY'"),
    ({"LIMITS": 5}, "must be a dict"),
    ({"LIMITS_POLICY": "no.such.module.policy"}, "cannot be used"),
    ({"LIMITS_POLICY": "django_evolink.conf.DEFAULTS"}, "not callable"),
    ({"DEFAULT_IMAGE_CREDITS": -2}, "DEFAULT_IMAGE_CREDITS"),
])
def test_bad_limits_are_errors_with_a_hint(settings, values, words):
    settings.EVOLINK = {**settings.EVOLINK, **values}
    found = [m for m in run_checks(tags=[Tags.compatibility])
             if m.id == "django_evolink.E007"]
    assert len(found) == 1 and words in found[0].msg
    assert found[0].hint


def test_good_limits_pass_the_checks(settings):
    settings.EVOLINK = {**settings.EVOLINK, "DEFAULT_IMAGE_CREDITS": 1.5,
                        "LIMITS_POLICY": "django_evolink.core.limits.configured_limits",
                        "LIMITS": {"ACTIVE_TASKS_PER_USER": 5, "CREDITS_PER_DAY": 100.5}}
    assert "django_evolink.E007" not in ids()
