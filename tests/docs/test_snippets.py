"""Every ```python block of docs/*.md, docs/ja/*.md and README.md is checked (no drift).

What happens to a block depends on the HTML comment on the line before it (optional):

``<!-- snippet: run -->``
    Executed for real, against the Evolink emulator, in a database. The blocks of one
    file marked ``run`` share one namespace, in order (like a doctest). Ready in it:
    ``user`` (a saved user), ``image_url`` (an image uploaded to the emulator),
    ``emulator`` (the :class:`~django_evolink.emulator.Emulator`), ``settings``,
    ``BASE_DIR``, ``path`` and ``include``.
(no comment)
    Compiled; its imports are executed; every dotted name reached from an imported name
    must exist (``services.create_task``); every call of an imported callable must fit its
    signature (keyword names, argument counts); and settings written in it (``EVOLINK``,
    ``Q_CLUSTER``, ``INSTALLED_APPS``, ``DATABASES``, ``urlpatterns``) are evaluated and
    checked: known ``EVOLINK`` keys, ``Q_CLUSTER`` passing the system checks W003/W013
    (``retry`` above ``timeout``, ``timeout`` above the longest job), installable
    apps, importable URL modules. ``...`` is fine as a placeholder.
``<!-- snippet: skip -->``
    Compiled only (pseudo code, a shell session written as Python, ...).
``<!-- snippet: site-file PATH -->``
    Compiled here; written to PATH of a brand-new site whose own pytest run must pass
    (``tests/docs/test_testing_page.py``; any fence language, e.g. ``ini``).

A failure names the file and line of the block (and of the offending line).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
FILES = (sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "docs" / "ja").glob("*.md"))
         + [ROOT / "README.md"])
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*(python|py|python3)\s*$")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*([a-z-]+)(?:\s+(\S+))?\s*-->\s*$")
MODES = ("run", "skip", "site-file")
SETTINGS_NAMES = ("EVOLINK", "Q_CLUSTER", "INSTALLED_APPS", "DATABASES", "urlpatterns")


@dataclass
class Snippet:
    path: Path
    line: int  # line of the first code line in the file (1-based)
    source: str
    mode: str  # "check", "run", "skip" or "site-file"
    arg: str = ""  # the path of a "site-file" block

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def code(self) -> Any:
        """The compiled block; line numbers in errors are the file's own."""
        return compile("\n" * (self.line - 1) + self.source, str(self.path.relative_to(ROOT)),
                       "exec")

    def tree(self) -> ast.Module:
        return ast.parse("\n" * (self.line - 1) + self.source)


def collect(path: Path) -> list[Snippet]:
    snippets: list[Snippet] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = match.group(1), match.group(2)
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(previous)
        mode = marker.group(1) if marker else "check"
        arg = (marker.group(2) or "") if marker else ""
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line)
            j += 1
        snippets.append(Snippet(path, i + 2, "\n".join(body) + "\n", mode, arg))
        i = j + 1
    return snippets


SNIPPETS = [s for path in FILES for s in collect(path)]


def test_there_are_snippets_and_every_marker_is_known():
    assert len(SNIPPETS) >= 10, "no ```python blocks found in docs/ and README.md"
    unknown = [f"{s.where}: snippet: {s.mode}" for s in SNIPPETS if s.mode not in (*MODES, "check")]
    assert not unknown, f"unknown snippet markers (allowed: {', '.join(MODES)}): {unknown}"


# --- checks of every block ---------------------------------------------------------------

def _fail(snippet: Snippet, node: ast.AST | None, message: str) -> None:
    line = getattr(node, "lineno", snippet.line)
    text = snippet.source.splitlines()[line - snippet.line] if node is not None else ""
    pytest.fail(f"{snippet.path.relative_to(ROOT)}:{line}: {message}\n    {text.strip()}",
                pytrace=False)


def _base_namespace() -> dict[str, Any]:
    from django.urls import include, path

    return {"BASE_DIR": ROOT, "Path": Path, "path": path, "include": include}


def _run_imports(snippet: Snippet, tree: ast.Module, ns: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        module = ast.Module(body=[node], type_ignores=[])
        try:
            exec(compile(module, str(snippet.path), "exec"), ns)  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - reported with the line
            _fail(snippet, node, f"import failed: {type(exc).__name__}: {exc}")
        for alias in node.names:
            names.add((alias.asname or alias.name).split(".")[0])
    return names


def _resolve(node: ast.AST, ns: dict[str, Any], imported: set[str]) -> tuple[bool, Any, str]:
    """(resolved?, object, dotted name) of a Name/Attribute chain rooted at an import."""
    if isinstance(node, ast.Name):
        if node.id in imported and node.id in ns:
            return True, ns[node.id], node.id
        return False, None, node.id
    if isinstance(node, ast.Attribute):
        ok, obj, name = _resolve(node.value, ns, imported)
        if not ok:
            return False, None, name
        dotted = f"{name}.{node.attr}"
        if not hasattr(obj, node.attr):
            raise AttributeError(f"{dotted} does not exist")
        return True, getattr(obj, node.attr), dotted
    return False, None, ""


def _check_names_and_calls(snippet: Snippet, tree: ast.Module, ns: dict[str, Any],
                           imported: set[str]) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            try:
                _resolve(node, ns, imported)
            except AttributeError as exc:
                _fail(snippet, node, str(exc))
        if not isinstance(node, ast.Call):
            continue
        ok, func, name = _resolve(node.func, ns, imported)
        if not ok or not callable(func) or isinstance(func, type) and issubclass(func, Exception):
            continue
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
                k.arg is None for k in node.keywords):
            continue
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            continue
        try:
            signature.bind(*[object()] * len(node.args), **{k.arg: None for k in node.keywords})
        except TypeError as exc:
            _fail(snippet, node, f"{name}{signature} cannot be called like this: {exc}")


def _check_settings(snippet: Snippet, tree: ast.Module, ns: dict[str, Any]) -> None:
    from django.test import override_settings

    from django_evolink import checks, conf

    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in SETTINGS_NAMES):
            continue
        name = node.targets[0].id
        try:
            value = eval(compile(ast.Expression(node.value), str(snippet.path), "eval"), ns)  # noqa: S307
        except Exception as exc:  # noqa: BLE001 - reported with the line
            _fail(snippet, node, f"{name} cannot be evaluated: {type(exc).__name__}: {exc}")
        ns[name] = value
        if name == "EVOLINK":
            unknown = sorted(set(value) - set(conf.DEFAULTS))
            if unknown:
                _fail(snippet, node, f"EVOLINK has unknown keys {unknown}")
        elif name == "Q_CLUSTER":
            # django-evolink's own checks (W003, W013), for the EVOLINK written beside it
            # (else the defaults: every model allowed): what `manage.py check` would say
            with override_settings(Q_CLUSTER=value, EVOLINK=ns.get("EVOLINK") or {}):
                said = checks.check_django_q()
            if said:
                _fail(snippet, node, "; ".join(f"{m.id}: {m.msg} ({m.hint})" for m in said))
        elif name == "INSTALLED_APPS":
            for app in value:
                module = app.split(".apps.")[0] if isinstance(app, str) else None
                if module and importlib.util.find_spec(module) is None:
                    _fail(snippet, node, f"INSTALLED_APPS names {app!r}, which is not importable")


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.where for s in SNIPPETS])
def test_snippet(snippet: Snippet):
    try:
        snippet.code()
    except SyntaxError as exc:
        pytest.fail(f"{exc.filename}:{exc.lineno}: {exc.msg}\n    {(exc.text or '').strip()}",
                    pytrace=False)
    if snippet.mode in ("skip", "site-file"):
        return  # site-file blocks run for real in a fresh site: test_testing_page.py
    tree = snippet.tree()
    ns = _base_namespace()
    imported = _run_imports(snippet, tree, ns)
    _check_names_and_calls(snippet, tree, ns, imported)
    _check_settings(snippet, tree, ns)


# --- blocks executed for real ------------------------------------------------------------

RUN_FILES = sorted({s.path for s in SNIPPETS if s.mode == "run"})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", RUN_FILES, ids=[str(p.relative_to(ROOT)) for p in RUN_FILES])
def test_run_snippets(path: Path, settings, evolink_emulator, django_user_model):
    from django_evolink.evolink.client import get_client

    buf = io.BytesIO()
    Image.new("RGB", (512, 512), (30, 90, 160)).save(buf, format="PNG")
    buf.seek(0)
    image_url = get_client().upload_file(buf, file_name="docs.png",
                                         content_type="image/png")["file_url"]
    ns = _base_namespace()
    ns.update(user=django_user_model.objects.create_user("docs", "docs@example.com", "pw"),
              image_url=image_url, emulator=evolink_emulator, settings=settings,
              __name__="docs_snippet")
    for snippet in (s for s in SNIPPETS if s.path == path and s.mode == "run"):
        try:
            exec(snippet.code(), ns)  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - reported with file and line
            tb = exc.__traceback__
            line = snippet.line
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == str(path.relative_to(ROOT)):
                    line = tb.tb_lineno
                tb = tb.tb_next
            pytest.fail(f"{path.relative_to(ROOT)}:{line}: the block starting at line "
                        f"{snippet.line} raised {type(exc).__name__}: {exc}", pytrace=False)
