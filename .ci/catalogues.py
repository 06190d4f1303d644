"""Translation catalogues: regenerate them (`make messages`) or check them (`make check-messages`).

    python .ci/catalogues.py update   # makemessages + compilemessages for every catalogue
    python .ci/catalogues.py check    # fail when a catalogue is stale, incomplete or uncompiled

`check` regenerates each catalogue in a scratch copy of its app and compares it with the
committed one using gettext's own tools:

* stale: a string marked in the code (or a template, or the page script) that the
  committed ``.po`` lacks, or an entry the code no longer has (``msgcmp`` both ways);
* incomplete: an untranslated or fuzzy entry (``msgcmp`` counts neither as translated);
* broken: placeholders or plural forms that ``msgfmt --check`` rejects;
* uncompiled: a committed ``.mo`` that differs from what ``msgfmt`` makes of its ``.po``.

Needs GNU gettext (``msgfmt``, ``msgmerge``, ``xgettext``, ``msgcmp``) on PATH.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("ja", "zh_Hans")
#: makemessages options shared by `update` and `check` (file-level locations: less churn).
OPTIONS = ("--add-location=file", "--no-obsolete")


@dataclass(frozen=True)
class Catalogue:
    app: str  # the app directory, relative to the repository
    domain: str  # "django" or "djangojs"

    def po(self, root: Path, language: str) -> Path:
        return root / self.app / "locale" / language / "LC_MESSAGES" / f"{self.domain}.po"


CATALOGUES = (
    Catalogue("django_evolink", "django"),
    Catalogue("example_project/demo", "django"),
    Catalogue("example_project/demo", "djangojs"),
)


def _django_admin() -> list[str]:
    return [sys.executable, "-m", "django"]


def _makemessages(app_dir: Path, domain: str) -> None:
    args = [*_django_admin(), "makemessages", "-d", domain, *OPTIONS]
    for language in LANGUAGES:
        args += ["-l", language]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    subprocess.run(args, cwd=app_dir, check=True, env=env, stdout=subprocess.DEVNULL)


def _msgfmt(po: Path, mo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", str(mo), str(po)],
        capture_output=True, text=True,
    )


def update() -> int:
    for cat in CATALOGUES:
        _makemessages(ROOT / cat.app, cat.domain)
    for cat in CATALOGUES:
        for language in LANGUAGES:
            po = cat.po(ROOT, language)
            result = _msgfmt(po, po.with_suffix(".mo"))
            print(f"{po.relative_to(ROOT)}: {result.stderr.strip()}")
            if result.returncode:
                return result.returncode
    return 0


def _msgcmp(defined: Path, reference: Path, *extra: str) -> str:
    """gettext's msgcmp: '' when every msgid of ``reference`` is translated in ``defined``."""
    result = subprocess.run(
        ["msgcmp", *extra, str(defined), str(reference)], capture_output=True, text=True
    )
    return "" if result.returncode == 0 else result.stderr.strip()


def check() -> int:
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch_root = Path(scratch)
        for app in sorted({cat.app for cat in CATALOGUES}):
            shutil.copytree(ROOT / app, scratch_root / app,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for cat in CATALOGUES:
            _makemessages(scratch_root / cat.app, cat.domain)
        for cat in CATALOGUES:
            for language in LANGUAGES:
                committed = cat.po(ROOT, language)
                name = str(committed.relative_to(ROOT))
                if not committed.exists():
                    problems.append(f"{name}: missing (run `make messages`)")
                    continue
                fresh = cat.po(scratch_root, language)
                # a marked string the committed catalogue lacks, or has untranslated/fuzzy
                missing = _msgcmp(committed, fresh)
                if missing:
                    problems.append(f"{name}: stale or incomplete (run `make messages`, then "
                                    f"translate):\n{missing}")
                # an entry the code no longer marks
                extra = _msgcmp(fresh, committed, "--use-untranslated", "--use-fuzzy")
                if extra:
                    problems.append(f"{name}: entries no longer in the code (run `make "
                                    f"messages`):\n{extra}")
                compiled = scratch_root / f"{cat.domain}-{language}.mo"
                result = _msgfmt(committed, compiled)
                if result.returncode:
                    problems.append(f"{name}: msgfmt --check failed:\n{result.stderr.strip()}")
                    continue
                if " untranslated" in result.stderr or " fuzzy" in result.stderr:
                    problems.append(f"{name}: {result.stderr.strip()}")
                mo = committed.with_suffix(".mo")
                if not mo.exists() or not filecmp.cmp(mo, compiled, shallow=False):
                    problems.append(f"{mo.relative_to(ROOT)}: not compiled from its .po "
                                    f"(run `make messages`)")
                else:
                    print(f"{name}: {result.stderr.strip()}")
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command not in ("update", "check"):
        sys.exit(__doc__)
    sys.exit(update() if command == "update" else check())
