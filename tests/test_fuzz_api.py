"""Fuzzing the REST API: inputs the database cannot store are refused with a 400."""

from __future__ import annotations

import pytest

from django_evolink.models import ImageTask
from tests.helpers_api import LIST_URL, PUBLIC_IMAGE, create_calls, image_bytes, upload

pytest_plugins = ["tests.helpers_api_fixtures"]
pytestmark = [pytest.mark.django_db]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "a\x00b", "image_urls": [PUBLIC_IMAGE]}, "prompt"),
        ({"prompt": "ab", "image_urls": [PUBLIC_IMAGE + "\x00"]}, "image_urls"),
        ({"prompt": "ab", "image_urls": [PUBLIC_IMAGE + "\n"]}, "image_urls"),
        ({"prompt": "ab", "image_urls": ["https://93.184.215.14/a b.png"]}, "image_urls"),
    ],
    ids=["NUL in prompt", "NUL in URL", "newline in URL", "space in URL"],
)
def test_nul_and_control_characters_are_refused_with_400(api, evolink_http, body, field):
    """PostgreSQL text and jsonb cannot hold NUL: this used to answer 500 on PostgreSQL."""
    response = api.post(LIST_URL, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not ImageTask.objects.exists() and not create_calls(evolink_http)


def test_a_nul_in_an_uploaded_prompt_is_refused_with_400(api, evolink_http):
    response = api.post(LIST_URL, {"prompt": "x\x00y", "images": [upload("a.png", image_bytes())]},
                        format="multipart")
    assert response.status_code == 400 and "prompt" in response.json()
    assert not ImageTask.objects.exists()
