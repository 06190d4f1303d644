"""System check messages and hints in the active language (manage.py check follows
LANGUAGE_CODE)."""

from __future__ import annotations

import pytest
from django.core.checks import Tags, run_checks
from django.utils import translation

pytestmark = pytest.mark.django_db


def _messages(settings):
    settings.EVOLINK = {**settings.EVOLINK, "CALLBACK_BASE_URL": "http://www.example.com",
                        "TYPO_KEY": 1, "MAX_RETRIES": -1}
    return {m.id: m for m in run_checks(tags=[Tags.compatibility])
            if m.id and m.id.startswith("django_evolink.")}


@pytest.mark.parametrize(
    ("language", "w002", "w002_hint", "e002", "e005"),
    [
        ("ja", "settings.EVOLINK に不明なキーがあります: TYPO_KEY。", "綴りを確認してください",
         "https のオリジンにしてください", "EVOLINK['MAX_RETRIES'] は 0 以上の整数にしてください"),
        ("zh-hans", "settings.EVOLINK 中有未知的键：TYPO_KEY。", "请检查拼写",
         "必须是 https 源", "EVOLINK['MAX_RETRIES'] 必须是 >= 0 的整数"),
        ("en", "Unknown key(s) in settings.EVOLINK: TYPO_KEY.", "Check the spelling",
         "must be an https origin", "EVOLINK['MAX_RETRIES'] must be a whole number >= 0"),
    ],
)
def test_check_messages_and_hints_are_translated(settings, language, w002, w002_hint, e002,
                                                 e005):
    with translation.override(language):
        found = _messages(settings)
    assert found["django_evolink.W002"].msg == w002
    assert w002_hint in found["django_evolink.W002"].hint
    assert e002 in found["django_evolink.E002"].msg
    assert e005 in found["django_evolink.E005"].msg
