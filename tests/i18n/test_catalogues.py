"""The shipped catalogues: complete for the code as it stands, compiled, with the plural
rule of both languages; `make check-messages` (CI) runs the same check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import translation
from django.utils.translation import ngettext

from django_evolink.models import Status

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_LOCALE = ROOT / "django_evolink" / "locale"


@pytest.mark.parametrize("language", ["ja", "zh_Hans"])
def test_package_ships_compiled_catalogues(language):
    directory = PACKAGE_LOCALE / language / "LC_MESSAGES"
    po = (directory / "django.po").read_text(encoding="utf-8")
    assert (directory / "django.mo").stat().st_size > 10_000
    assert '"Plural-Forms: nplurals=1; plural=0;\\n"' in po
    assert "#, fuzzy" not in po


@pytest.mark.parametrize(
    ("language", "single", "statuses"),
    [("ja", "%(task)s: 未保存の画像 %(count)d 枚", ["送信待ち", "処理待ち", "処理中"]),
     ("zh-hans", "%(task)s：已将 %(count)d 张缺失图片", ["排队中", "等待中", "处理中"])],
)
def test_plural_forms_and_choices_resolve(language, single, statuses):
    with translation.override(language):
        for count in (1, 2, 5):
            text = ngettext("%(task)s: download of %(count)d missing image queued.",
                            "%(task)s: download of %(count)d missing images queued.", count)
            assert text.startswith(single)
        # the statuses carry a context: django-q2's zh_Hans "Queued" must not win
        labels = [Status.QUEUED.label, Status.PENDING.label, Status.PROCESSING.label]
        assert [str(label) for label in labels] == statuses


@pytest.mark.skipif(not all(shutil.which(t) for t in ("msgfmt", "msgmerge", "xgettext", "msgcmp")),
                    reason="GNU gettext is not installed (apt-get install gettext)")
def test_catalogues_are_complete_for_the_code():
    """Every marked string is in every catalogue, translated, not fuzzy, and compiled."""
    result = subprocess.run([sys.executable, str(ROOT / ".ci" / "catalogues.py"), "check"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
