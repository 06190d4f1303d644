"""The OpenAPI schema: checked in, up to date, valid; the API works without drf-spectacular."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "openapi.yaml"
REGENERATE = "python -m django spectacular --settings=tests.settings --file docs/openapi.yaml"


def test_the_checked_in_schema_is_up_to_date(tmp_path):
    fresh = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(fresh), "--validate", "--fail-on-warn")
    assert SCHEMA.exists(), f"docs/openapi.yaml is missing; generate it with: {REGENERATE}"
    assert fresh.read_text() == SCHEMA.read_text(), (
        f"docs/openapi.yaml is stale; regenerate it (from the repository root) with: {REGENERATE}"
    )


def test_the_schema_documents_every_endpoint_and_its_answers():
    schema = yaml.safe_load(SCHEMA.read_text())
    paths = schema["paths"]
    create = paths["/evolink/tasks/"]["post"]
    assert set(create["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"201", "400", "429", "502", "503"} <= set(create["responses"])
    upload = schema["components"]["schemas"]["TaskUpload"]["properties"]["images"]
    assert upload["type"] == "array" and upload["items"]["format"] == "binary"
    assert {"200", "400"} <= set(paths["/evolink/tasks/"]["get"]["responses"])
    assert {"200", "404"} <= set(paths["/evolink/tasks/{id}/"]["get"]["responses"])
    assert {"200", "404", "429", "502"} <= set(
        paths["/evolink/tasks/{id}/refresh/"]["post"]["responses"])
    task = schema["components"]["schemas"]["ImageTask"]["properties"]
    assert {"usage", "images", "error", "status", "progress"} <= set(task)
    assert not any("token" in name or "lease" in name for name in task)


@pytest.mark.slow
def test_the_api_works_without_drf_spectacular():
    code = """
import sys
sys.modules["drf_spectacular"] = None  # as if not installed
import django
from django.conf import settings
settings.configure(
    SECRET_KEY="x", ROOT_URLCONF="django_evolink.urls", ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "rest_framework",
                    "django_q", "django_evolink"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    EVOLINK={"API_KEY": "sk-evo-x"},
)
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django_evolink.api import schema
assert not schema.HAS_SPECTACULAR
from django.contrib.auth.models import User
from rest_framework.test import APIClient
client = APIClient()
client.force_authenticate(User.objects.create(username="u"))
r = client.get("/tasks/")
assert r.status_code == 200, r.content
r = client.post("/tasks/", {"prompt": "", "image_urls": []}, format="json")
assert r.status_code == 400 and "prompt" in r.json(), r.content
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
