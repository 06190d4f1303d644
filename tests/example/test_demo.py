"""The example site's demo account, its page, the in-process emulator and `make demo`."""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from tests.support.example import EXAMPLE_DIR, clean_env, use_example_site

# importable once tests.support.example has put example_project/ on sys.path
demo_account = importlib.import_module("demo.management.commands.demo_account")
Command, ensure_demo_account = demo_account.Command, demo_account.ensure_demo_account
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- demo account ------------------------------------------------------------------------

@pytest.mark.django_db
def test_demo_account_is_created_once_and_never_changed_by_a_rerun(settings, tmp_path):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    path = tmp_path / "demo-account"
    first = ensure_demo_account(path=path)
    assert first["created"] and first["username"] == "demo" and len(first["password"]) >= 12
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    user = get_user_model().objects.get(username="demo")
    assert user.is_staff and user.is_superuser and user.check_password(first["password"])

    again = ensure_demo_account(path=path)
    assert again == {**first, "created": False}
    assert get_user_model().objects.filter(username="demo").count() == 1
    user.refresh_from_db()
    assert user.check_password(first["password"])

    reset = ensure_demo_account(path=path, reset=True)
    assert reset["reset"] and reset["password"] != first["password"]
    user.refresh_from_db()
    assert user.check_password(reset["password"])

    user.set_password("changed-by-hand")
    user.save()
    assert ensure_demo_account(path=path)["password"] is None  # not ours to show any more


@pytest.mark.django_db
def test_demo_account_command_output(settings, tmp_path):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    settings.EXAMPLE_DEMO_CREDENTIALS = str(tmp_path / "cred")
    out = io.StringIO()
    call_command(Command(), "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["created"] and data["username"] == "demo"
    out = io.StringIO()
    call_command(Command(), stdout=out)
    assert "exists (unchanged)" in out.getvalue() and data["password"] in out.getvalue()


# --- the page (server side) --------------------------------------------------------------

@pytest.mark.django_db
def test_page_needs_a_login_and_links_the_api(client, settings, user):
    use_example_site(settings)
    answer = client.get("/")
    assert answer.status_code == 302 and answer["Location"].startswith(reverse("login"))
    assert client.get(reverse("login")).status_code == 200
    client.force_login(user)
    page = client.get("/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-list-url="/evolink/tasks/"' in html
    assert 'data-detail-url="/evolink/tasks/00000000-0000-0000-0000-000000000000/"' in html
    # the script's sentences come from Django's JavaScript catalogue, loaded first
    assert html.index('src="/jsi18n/"') < html.index("demo/app.js")
    assert "csrftoken" in page.cookies


@pytest.mark.django_db
def test_page_and_its_script_catalogue_follow_the_language(client, settings, user):
    use_example_site(settings)
    client.force_login(user)
    for language, heading, sentence, html_lang in (
        ("ja", "画像から画像を生成", "クレジット不足", 'lang="ja"'),
        ("zh-Hans", "以图生图", "积分不足", 'lang="zh-hans"'),
    ):
        html = client.get("/", headers={"accept-language": language}).content.decode()
        assert heading in html and html_lang in html
        script = client.get("/jsi18n/", headers={"accept-language": language}).content.decode()
        assert json.dumps(sentence)[1:-1] in script  # the catalogue is JSON (\\uXXXX)
    html = client.get("/").content.decode()
    assert "Make images from images" in html and 'lang="en' in html


@pytest.mark.django_db
def test_media_is_served_only_in_development(client, settings, tmp_path):
    use_example_site(settings)
    settings.MEDIA_ROOT = str(tmp_path)
    (tmp_path / "a.txt").write_text("hello")
    assert client.get("/media/a.txt").status_code == 200
    settings.EXAMPLE_SERVE_MEDIA = False
    settings.DEBUG = False
    assert client.get("/media/a.txt").status_code == 404


def test_favicon_is_the_demos_icon(client, settings):
    """Browsers ask every page's /favicon.ico (the admin's too): not a 404."""
    from django.contrib.staticfiles import finders

    use_example_site(settings)
    answer = client.get("/favicon.ico")
    assert answer.status_code == 302 and answer["Location"] == "/static/demo/favicon.svg"
    icon = finders.find("demo/favicon.svg")
    assert icon and "<svg" in Path(icon).read_text(encoding="utf-8")


# --- the emulator started in the web process (manage.py runserver by hand) ---------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_runserver_starts_the_emulator_in_process_once(settings, monkeypatch):
    from demo import apps as demo_apps

    port = _free_port()
    settings.EXAMPLE_EMULATOR_URL = f"http://127.0.0.1:{port}"
    monkeypatch.setattr(demo_apps, "_emulator", None)
    emulator = demo_apps.autostart_emulator()
    try:
        assert emulator is not None and emulator.url == f"http://127.0.0.1:{port}"
        answer = requests.get(f"{emulator.url}/v1/credits", timeout=5,
                              headers={"Authorization": "Bearer sk-evo-emulator"})
        assert answer.status_code == 200
        assert demo_apps.autostart_emulator() is emulator  # once per process
        monkeypatch.setattr(demo_apps, "_emulator", None)
        assert demo_apps.autostart_emulator() is None  # one already answers there
    finally:
        emulator.stop()


def test_autostart_only_in_the_serving_runserver_process(monkeypatch):
    from demo import apps as demo_apps

    monkeypatch.setattr(sys, "argv", ["manage.py", "qcluster"])
    assert not demo_apps._serving_process()
    monkeypatch.setattr(sys, "argv", ["manage.py", "runserver"])
    monkeypatch.delenv("RUN_MAIN", raising=False)
    assert not demo_apps._serving_process()  # the autoreloader's parent
    monkeypatch.setenv("RUN_MAIN", "true")
    assert demo_apps._serving_process()
    monkeypatch.setattr(sys, "argv", ["manage.py", "runserver", "--noreload"])
    monkeypatch.delenv("RUN_MAIN")
    assert demo_apps._serving_process()


# --- make demo: the runner, end to end -----------------------------------------------------

def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent and int(entry) not in found:
                found.add(int(entry))
                todo.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find child processes")
def test_make_demo_runner_serves_the_site_and_stops_everything(tmp_path):
    port, emulator_port = _free_port(), _free_port()
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3", MEDIA_ROOT=str(tmp_path / "media"),
        EXAMPLE_DEMO_CREDENTIALS=str(tmp_path / "cred"), DEMO_PORT=str(port),
        EVOLINK_EMULATOR_PORT=str(emulator_port),
    )
    proc = subprocess.Popen([sys.executable, str(EXAMPLE_DIR / "run_demo.py")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert f"Open http://127.0.0.1:{port}/ in a browser" in output, output
        login = re.search(r"Log in as demo / (\S+)", output)
        assert login, output
        assert f"emulator at http://127.0.0.1:{emulator_port}" in output

        site = f"http://127.0.0.1:{port}"
        session = requests.Session()
        page = session.get(f"{site}/accounts/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = session.post(f"{site}/accounts/login/", timeout=10, data={
            "username": "demo", "password": login.group(1), "csrfmiddlewaretoken": token,
            "next": "/"})
        assert answer.status_code == 200 and 'id="task-form"' in answer.text
        # the API answers through the emulator the runner started (credits need Evolink)
        tasks = session.get(f"{site}/evolink/tasks/", timeout=10)
        assert tasks.status_code == 200 and tasks.json()["results"] == []
        children = _children(proc.pid)
        assert len(children) >= 3  # emulator, web, qcluster (+ its workers)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "[demo] stopped." in rest
    time.sleep(0.5)
    assert not [pid for pid in children if _alive(pid)], "orphans left behind"
