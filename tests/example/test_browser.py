"""The example site's page and the admin in a real browser (headless Debian Chromium).

Selenium drives ``/usr/bin/chromium`` through ``/usr/bin/chromedriver`` (Debian packages
``chromium`` and ``chromium-driver``); both paths are passed explicitly so Selenium
Manager never downloads anything. The site runs in pytest-django's ``live_server`` with
the Evolink emulator (fast timings, callbacks to the live server allowed) and django-q2
in sync mode. Screenshots land in ``docs/_static/screenshots/``. Without Chromium the
tests are skipped, saying what to install.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.support.example import ROOT, use_example_site

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# Screenshots go to a scratch folder, so a test run leaves the work tree clean; set
# EVOLINK_UPDATE_SCREENSHOTS=1 to refresh the ones the docs show.
SCREENSHOTS = (
    ROOT / "docs" / "_static" / "screenshots"
    if os.environ.get("EVOLINK_UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "django-evolink-screenshots"
)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--window-size=1280,1300",
)
PASSWORD = "pw-browser-0123"


def _missing_browser() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return (f"{path} not found: install Debian's {package} "
                    "(apt-get install chromium chromium-driver) to run the browser tests")
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium; skipped (with the reason) where it is not installed."""
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site(browser, settings, live_server, evolink_emulator):
    """The example site in the live server, talking to the emulator.

    Afterwards the browser leaves the page, so its polling stops before the database is
    emptied for the next test.
    """
    use_example_site(settings, live_server.url)
    settings.EXAMPLE_EMULATOR_URL = evolink_emulator.url
    evolink = dict(settings.EVOLINK)
    evolink["THROTTLE_RATES"] = {"evolink_create": None, "evolink_refresh": None}
    settings.EVOLINK = evolink
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    yield live_server
    browser.get("about:blank")
    browser.delete_all_cookies()


def _photo(path: Path, size=(640, 480)) -> Path:
    """A real photo-like RGB image (no alpha) of at least 384 px a side."""
    image = Image.new("RGB", size, (70, 130, 180))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, size[1] * 2 // 3, size[0], size[1]), fill=(60, 140, 70))
    draw.ellipse((size[0] - 200, 40, size[0] - 80, 160), fill=(250, 210, 60))
    draw.polygon([(80, 320), (230, 120), (380, 320)], fill=(120, 110, 100))
    image.save(path, format="PNG")
    return path


def _wait(browser, condition, timeout: float = 30.0, what: str = "condition"):
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    # an element may be replaced between finding and reading it (the page re-renders its
    # form, or navigates): look again on the next poll
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.1,
                             ignored_exceptions=ignored).until(lambda d: condition(d))
    except Exception as exc:
        page = browser.find_element("tag name", "body").text
        raise AssertionError(f"timed out waiting for {what}; page says:\n{page}") from exc


def _log_in(browser, base: str, username: str, password: str, path: str = "/") -> None:
    browser.get(base + path)
    _wait(browser, lambda d: d.find_elements("id", "id_username"), what="the login form")
    browser.find_element("id", "id_username").send_keys(username)
    browser.find_element("id", "id_password").send_keys(password)
    form = browser.find_element("id", "id_username")
    browser.find_element("css selector", "button[type=submit], input[type=submit]").click()
    # the next page has loaded only once the login form is gone; the admin's login page
    # shares the admin's header, so a wait for the header alone could pass before the
    # answer arrives and race the test's next navigation
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30, poll_frequency=0.1).until(
        expected_conditions.staleness_of(form), "the login form was not submitted")


def _screenshot(browser, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    tmp = path.with_suffix(".tmp.png")
    assert browser.save_screenshot(str(tmp)), f"could not save {path}"
    shutil.move(tmp, path)
    with Image.open(path) as shot:
        assert shot.width >= 800 and shot.height >= 600
    return path


def _message(browser) -> str:
    element = browser.find_element("id", "message")
    return element.text if element.is_displayed() else ""


def _field_error(browser, field: str) -> str:
    element = browser.find_element("css selector", f'.field-error[data-field="{field}"]')
    return element.text if element.is_displayed() else ""


def _submit(browser, *, prompt: str, image: Path | None = None, n: int = 1) -> None:
    from selenium.webdriver.support.ui import Select

    browser.find_element("id", "prompt").clear()
    if prompt:
        browser.find_element("id", "prompt").send_keys(prompt)
    if image is not None:
        browser.find_element("id", "image1").send_keys(str(image))
    Select(browser.find_element("id", "n")).select_by_value(str(n))
    browser.find_element("id", "submit").click()


#: Records every value the progress bar shows, in order (window.progressSeen).
WATCH_PROGRESS = """
window.progressSeen = [];
new MutationObserver(function () {
  var value = document.getElementById("progress").getAttribute("aria-valuenow");
  var seen = window.progressSeen;
  if (value !== null && seen[seen.length - 1] !== value) { seen.push(value); }
}).observe(document.getElementById("progress"), {attributes: true});
"""


# a dedicated emulator at 5x (a task runs ~6 s) so the progress has time to move
@pytest.mark.evolink_emulator(speed=5.0)
def test_page_submits_an_uploaded_image_and_shows_the_results(
        browser, site, evolink_emulator, django_user_model, tmp_path, settings):
    django_user_model.objects.create_user("maria", "maria@example.com", PASSWORD)
    photo = _photo(tmp_path / "holiday.png")
    settings.EVOLINK = {**settings.EVOLINK, "WATCH_POLL_INTERVAL": 0.5,
                        "EVENTS_POLL_INTERVAL": 0.2}

    _log_in(browser, site.url, "maria", PASSWORD)
    _wait(browser, lambda d: d.find_elements("id", "task-form"), what="the page")
    _wait(browser, lambda d: "No tasks yet" in d.find_element("id", "recent").text,
          what="the empty task list")
    browser.execute_script(WATCH_PROGRESS)
    _submit(browser, prompt="Turn the landscape into a watercolour painting at dusk",
            image=photo, n=2)

    # the progress bar and the status follow the task until its images are stored
    _wait(browser, lambda d: d.find_element("id", "current").is_displayed(), what="the task")
    _wait(browser, lambda d: len(d.find_elements(
        "css selector", '#results figure[data-stored="1"]')) == 2,
        timeout=45, what="two stored result images")
    assert "completed" in browser.find_element("id", "status").get_attribute("class")
    assert browser.find_element("id", "progress").get_attribute("aria-valuenow") == "100"
    assert "Done: 2 images." in browser.find_element("id", "status").text
    assert not _message(browser)
    # the bar moved through intermediate values (the event stream), then reached 100
    seen = [int(v) for v in browser.execute_script("return window.progressSeen")]
    assert seen[-1] == 100 and seen == sorted(seen), seen
    assert any(0 < v < 100 for v in seen), seen

    # the images really are displayed: loaded, with pixels, from the site's storage
    _wait(browser, lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('#results img'))"
        ".every(i => i.complete && i.naturalWidth > 0)"), what="the images to load")
    sources = browser.execute_script(
        "return Array.from(document.querySelectorAll('#results img')).map(i => i.src)")
    assert len(sources) == 2 and all(s.startswith(site.url + "/media/") for s in sources)
    widths = browser.execute_script(
        "return Array.from(document.querySelectorAll('#results img')).map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths)

    # the task list shows it, completed; the server agrees
    _wait(browser, lambda d: d.find_elements(
        "css selector", '#recent li[data-status="completed"]'), what="the recent task")
    from django_evolink.models import ImageTask

    task = ImageTask.objects.get()
    assert task.status == "completed" and task.images.exclude(file="").count() == 2
    assert task.user.username == "maria"
    assert any(r.path.startswith("/api/v1/files/upload") for r in evolink_emulator.requests)

    browser.execute_script("window.scrollTo(0, 0)")
    _screenshot(browser, "frontend.png")


def test_page_explains_every_error_the_api_answers(
        browser, site, evolink_emulator, django_user_model, tmp_path):
    django_user_model.objects.create_user("omar", "omar@example.com", PASSWORD)
    photo = _photo(tmp_path / "street.png")
    _log_in(browser, site.url, "omar", PASSWORD)
    _wait(browser, lambda d: d.find_elements("id", "task-form"), what="the page")

    # nothing chosen: said before anything is sent
    _submit(browser, prompt="A poster")
    _wait(browser, lambda d: _field_error(d, "images"), what="the missing-image message")
    assert "one or two image files" in _field_error(browser, "images")

    # 400: field errors, shown next to their field
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (100, 100), (1, 2, 3)).save(tiny)
    _submit(browser, prompt="A poster", image=tiny)
    _wait(browser, lambda d: "384" in _field_error(d, "images"),  # says the allowed sides
          what="the image error from the API")
    assert "correct the fields" in _message(browser)
    browser.find_element("id", "image1").clear()

    # 503: Evolink says 402, the site is out of credits
    evolink_emulator.set_credits(0)
    _submit(browser, prompt="A poster of the street", image=photo)
    _wait(browser, lambda d: "no credits left" in _message(d), what="the out-of-credits message")
    assert _message(browser).count("image service") == 1, _message(browser)  # said once
    evolink_emulator.set_credits(1000)
    browser.find_element("id", "image1").clear()

    # 502: Evolink keeps failing (5xx after the client's retries)
    evolink_emulator.faults.add_error("create", 503, count=20)
    _submit(browser, prompt="A poster of the street", image=photo)
    _wait(browser, lambda d: "could not be reached" in _message(d),
          what="the Evolink-down message")
    assert _message(browser).count("image service") == 1, _message(browser)  # said once
    evolink_emulator.faults.clear()
    browser.find_element("id", "image1").clear()

    # 429: rate limited, with the wait from Retry-After and the button held back
    evolink_emulator.faults.add_error("create", 429, count=20, retry_after=5)
    _submit(browser, prompt="A poster of the street", image=photo)
    _wait(browser, lambda d: "wait" in _message(d).lower(), what="the rate-limit message")
    assert browser.find_element("id", "submit").get_attribute("disabled")
    evolink_emulator.faults.clear()

    # the refused tasks are kept as failed and listed with their status
    _wait(browser, lambda d: d.find_elements("css selector", '#recent li[data-status="failed"]'),
          what="the failed tasks in the list")


def test_page_in_japanese(browser, site, evolink_emulator, django_user_model, tmp_path):
    """The page picked in Japanese from the switcher: the template, the script's sentences
    (Django's JavaScript catalogue), the API's field errors and a finished task."""
    from selenium.webdriver.support.ui import Select

    django_user_model.objects.create_user("haruka", "haruka@example.com", PASSWORD)
    photo = _photo(tmp_path / "kyoto.png")
    _log_in(browser, site.url, "haruka", PASSWORD)
    def choose_japanese(d) -> bool:
        Select(d.find_element("id", "language")).select_by_value("ja")
        return True

    _wait(browser, choose_japanese, what="the language switcher set to Japanese")
    try:
        _japanese_page(browser, photo, tmp_path)
    finally:  # the language cookie is the site's: drop it here, the next tests read English
        browser.delete_cookie("django_language")


def _japanese_page(browser, photo: Path, tmp_path: Path) -> None:
    _wait(browser, lambda d: "画像から画像を生成" in d.find_element("tag name", "h1").text,
          what="the Japanese page")
    assert browser.find_element("tag name", "html").get_attribute("lang") == "ja"
    _wait(browser, lambda d: "タスクはまだありません" in d.find_element("id", "recent").text,
          what="the empty list, from the JavaScript catalogue")

    # checked in the page, before anything is sent
    _submit(browser, prompt="水彩画にして")
    _wait(browser, lambda d: _field_error(d, "images"), what="the missing-image message")
    assert "画像ファイルを 1〜2 個選択" in _field_error(browser, "images")

    # the API's 400, field by field, in Japanese
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (100, 100), (1, 2, 3)).save(tiny)
    _submit(browser, prompt="水彩画にして", image=tiny)
    _wait(browser, lambda d: _field_error(d, "images"), what="the image error")
    assert "以下の項目のエラーを修正してください" in _message(browser)
    assert "幅と高さはそれぞれ 384〜" in _field_error(browser, "images")
    browser.find_element("id", "image1").clear()

    # a task to the end: the progress and the result in Japanese
    _submit(browser, prompt="夕暮れの水彩画にして", image=photo, n=2)
    _wait(browser, lambda d: len(d.find_elements(
        "css selector", '#results figure[data-stored="1"]')) == 2,
        timeout=45, what="two stored result images")
    assert "完了しました（画像 2 枚）" in browser.find_element("id", "status").text
    _screenshot(browser, "frontend-ja.png")


def test_admin_screenshots(browser, site, evolink_emulator, django_user_model, tmp_path):
    """The admin's changelist, change page and usage view, for docs/admin.md."""
    from django.urls import reverse

    from django_evolink import services

    staff = django_user_model.objects.create_user(
        "admin", "admin@example.com", PASSWORD, is_staff=True, is_superuser=True)
    from django.conf import settings

    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    _photo(Path(settings.MEDIA_ROOT) / "street.png")
    photo_url = f"{site.url}/media/street.png"  # served by the example site's media view
    tasks = []
    for prompt, n in (("Make it a pencil sketch", 1), ("Winter version of this street", 2),
                      ("Studio product shot on white", 1)):
        tasks.append(services.create_task(prompt=prompt, image_urls=[photo_url], n=n,
                                          user=staff))
    deadline = time.monotonic() + 20
    from django_evolink.models import ImageTask

    while time.monotonic() < deadline and ImageTask.objects.exclude(
            status__in=["completed", "failed", "cancelled"]).exists():
        time.sleep(0.3)

    _log_in(browser, site.url, "admin", PASSWORD, path=reverse("admin:index"))
    _wait(browser, lambda d: d.find_elements("id", "user-tools"), what="the admin index")
    info = (ImageTask._meta.app_label, ImageTask._meta.model_name)
    browser.get(site.url + reverse("admin:{}_{}_changelist".format(*info)))
    _wait(browser, lambda d: d.find_elements("id", "result_list"), what="the changelist")
    _screenshot(browser, "admin-changelist.png")
    browser.get(site.url + reverse("admin:{}_{}_change".format(*info), args=[tasks[-1].pk]))
    _wait(browser, lambda d: d.find_elements("css selector", "#content-main form"),
          what="the change page")
    _screenshot(browser, "admin-change.png")
    browser.get(site.url + reverse("admin:{}_{}_usage".format(*info)))
    _wait(browser, lambda d: d.find_elements("id", "content-main"), what="the usage view")
    assert "Server Error" not in browser.title
    _screenshot(browser, "admin-usage.png")


def _pick_model(browser, name: str) -> None:
    from selenium.webdriver.support.ui import Select

    _wait(browser, lambda d: d.find_element("id", "task-form").get_attribute(
        "data-models-loaded") == "1", what="the models from GET models/")
    Select(browser.find_element("id", "model")).select_by_value(name)


def test_model_picker_builds_the_form_from_get_models(
        browser, site, evolink_emulator, django_user_model, tmp_path, settings):
    settings.EVOLINK = {**settings.EVOLINK, "MODELS": None}
    django_user_model.objects.create_user("lena", "lena@example.com", PASSWORD)
    _log_in(browser, site.url, "lena", PASSWORD)
    _wait(browser, lambda d: d.find_elements("id", "task-form"), what="the page")
    from selenium.webdriver.support.ui import Select

    from django_evolink.models import ImageTask

    # a text-to-image model: no image fields, its own parameters (size, prompt_extend)
    _pick_model(browser, "wan2.5-text-to-image")
    assert not browser.find_element("id", "images-fieldset").is_displayed()
    assert browser.find_element("id", "param-size").is_displayed()
    browser.find_element("id", "prompt").send_keys("A lighthouse at dawn")
    browser.find_element("id", "param-size").send_keys("1024x768")
    Select(browser.find_element("id", "param-prompt_extend")).select_by_value("false")
    browser.find_element("id", "submit").click()
    _wait(browser, lambda d: ImageTask.objects.filter(model="wan2.5-text-to-image").exists(),
          what="the text-to-image task")
    task = ImageTask.objects.get(model="wan2.5-text-to-image")
    assert task.image_urls == [] and task.params == {"size": "1024x768", "prompt_extend": False}
    _wait(browser, lambda d: len(d.find_elements(
        "css selector", '#results figure[data-stored="1"]')) == 1,
        timeout=45, what="the stored text-to-image result")
    task.refresh_from_db()
    assert (task.images.get().width, task.images.get().height) == (1024, 768)

    # a multi-image model: three uploaded files in one request
    _pick_model(browser, "qwen-image-edit")
    assert browser.find_element("id", "images-fieldset").is_displayed()
    assert not browser.find_element("id", "n-field").is_displayed()  # it takes no n
    photos = [_photo(tmp_path / f"p{i}.png", size=(500 + i * 10, 420)) for i in range(3)]
    browser.find_element("id", "prompt").clear()
    browser.find_element("id", "prompt").send_keys("Combine the three photos")
    browser.find_element("id", "image1").send_keys("\n".join(str(p) for p in photos))
    browser.find_element("id", "submit").click()
    # the row is written before the create is sent (record first): wait for the answer
    _wait(browser, lambda d: ImageTask.objects.filter(
        model="qwen-image-edit", evolink_id__isnull=False).exists(),
        what="the multi-image task's create answer")
    task = ImageTask.objects.get(model="qwen-image-edit")
    assert len(task.image_urls) == 3 and len(task.input_files) == 3
    [sent] = [r.json for r in evolink_emulator.requests
              if r.path == "/v1/images/generations" and r.json["model"] == "qwen-image-edit"]
    assert sent["prompt"] == "Combine the three photos" and len(sent["image_urls"]) == 3
    assert "n" not in sent

    # a bad parameter value is shown next to its field
    _pick_model(browser, "qwen-image-3.0")
    browser.find_element("id", "prompt").clear()
    browser.find_element("id", "prompt").send_keys("A cat")
    browser.find_element("id", "param-seed").send_keys("-5")
    browser.find_element("id", "submit").click()
    _wait(browser, lambda d: _field_error(d, "seed"), what="the seed error")
    assert "seed must be from 0 to 2147483647." in _field_error(browser, "seed")


# --- layout at common screen sizes, the form's errors, the admin's fit (issue 15) --------

SIZES = ((1280, 800), (1280, 900), (1920, 1080))


def _viewport(browser, width: int, height: int) -> None:
    """The page's viewport exactly ``width`` × ``height`` CSS pixels (no window chrome)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


@pytest.fixture
def viewport(browser):
    yield lambda width, height: _viewport(browser, width, height)
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _scrolls_sideways(browser) -> int:
    """How many pixels the page is wider than the viewport (0: no sideways scrolling)."""
    return browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")


def test_page_fits_common_screens(browser, site, evolink_emulator, django_user_model, viewport):
    django_user_model.objects.create_user("tomas", "tomas@example.com", PASSWORD)
    _log_in(browser, site.url, "tomas", PASSWORD)
    _wait(browser, lambda d: d.find_element("id", "task-form").get_attribute(
        "data-models-loaded") == "1", what="the models from GET models/")
    assert browser.find_element("id", "emulator-note").is_displayed()  # the longest case
    for width, height in SIZES:
        viewport(width, height)
        browser.execute_script("window.scrollTo(0, 0)")
        bottom = browser.execute_script(
            "return document.getElementById('submit').getBoundingClientRect().bottom")
        if height >= 900:
            assert bottom <= height, f"Generate is below the fold at {width}×{height}: {bottom}"
        assert _scrolls_sideways(browser) <= 0
        _screenshot(browser, f"frontend-{width}x{height}.png")


def test_empty_submit_flags_every_missing_field_and_clears_an_old_failure(
        browser, site, evolink_emulator, django_user_model, tmp_path):
    django_user_model.objects.create_user("ines", "ines@example.com", PASSWORD)
    photo = _photo(tmp_path / "bridge.png")
    _log_in(browser, site.url, "ines", PASSWORD)
    _wait(browser, lambda d: d.find_element("id", "task-form").get_attribute(
        "data-models-loaded") == "1", what="the models from GET models/")

    # a task that fails on Evolink's side: its failure is shown with the task
    evolink_emulator.faults.fail_next_tasks(1, message="the generator broke")
    _submit(browser, prompt="A bridge in the fog", image=photo)
    _wait(browser, lambda d: "failed" in d.find_element("id", "status").get_attribute("class"),
          timeout=45, what="the failed task")
    assert browser.find_element("id", "current").is_displayed()
    browser.find_element("id", "image1").clear()

    # an empty submit: the prompt AND the images are flagged at once, nothing is sent, and
    # the old failure no longer stands next to the new errors
    sent = len(evolink_emulator.requests)
    _submit(browser, prompt="")
    _wait(browser, lambda d: _field_error(d, "prompt") and _field_error(d, "images"),
          what="both missing fields flagged")
    assert "correct the fields" in _message(browser)
    assert "invalid" in browser.find_element("id", "prompt").get_attribute("class")
    assert "invalid" in browser.find_element("id", "image1").get_attribute("class")
    assert not browser.find_element("id", "current").is_displayed()
    assert len(evolink_emulator.requests) == sent
    browser.execute_script("window.scrollTo(0, 0)")
    _screenshot(browser, "frontend-empty-submit.png")

    # Evolink refuses the request (400): its reason is said once, not behind two prefixes
    evolink_emulator.faults.add_error("create", 400, count=1,
                                      message="image_urls[0] could not be read")
    _submit(browser, prompt="A bridge at noon", image=photo)
    _wait(browser, lambda d: "could not be read" in _message(d), what="the refusal")
    text = _message(browser)
    assert text.count("refused the request") == 1, text
    browser.find_element("id", "image1").clear()


def test_favicon_is_served(browser, site):
    browser.get(site.url + "/favicon.ico")
    assert "404" not in browser.title and "Not Found" not in browser.page_source


def test_admin_fits_common_screens(browser, site, evolink_emulator, django_user_model, viewport):
    """The changelist does not scroll sideways at 1280 px; the result images inline fits
    its fieldset."""
    from django.conf import settings
    from django.urls import reverse

    from django_evolink import services
    from django_evolink.models import ImageTask

    staff = django_user_model.objects.create_user(
        "admin2", "admin2@example.com", PASSWORD, is_staff=True, is_superuser=True)
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    _photo(Path(settings.MEDIA_ROOT) / "harbour.png")
    photo_url = f"{site.url}/media/harbour.png"
    task = services.create_task(
        prompt="A very long prompt that describes the harbour at dusk with boats, gulls, "
               "reflections on the water and a lighthouse far away", image_urls=[photo_url],
        n=4, user=staff)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not ImageTask.objects.filter(
            pk=task.pk, status="completed", images_stored_at__isnull=False).exists():
        time.sleep(0.3)
    _log_in(browser, site.url, "admin2", PASSWORD, path=reverse("admin:index"))
    _wait(browser, lambda d: d.find_elements("id", "site-name"), what="the admin index")
    info = (ImageTask._meta.app_label, ImageTask._meta.model_name)
    for width, height in ((1280, 800), (1920, 1080)):
        viewport(width, height)
        browser.get(site.url + reverse("admin:{}_{}_changelist".format(*info)))
        _wait(browser, lambda d: d.find_elements("id", "result_list"), what="the changelist")
        _screenshot(browser, f"admin-changelist-{width}x{height}.png")
        assert _scrolls_sideways(browser) <= 0, f"the changelist scrolls sideways at {width}"
        # the table's own box (the admin lets it scroll inside .results) fits too
        inner = browser.execute_script(
            "var r = document.querySelector('#changelist .results');"
            "return r.scrollWidth - r.clientWidth")
        assert inner <= 0, f"the task table is {inner} px too wide at {width}"
        thumbs = browser.execute_script(
            "return Array.from(document.querySelectorAll('#result_list img'))"
            ".map(i => i.getBoundingClientRect().right)")
        assert thumbs and max(thumbs) <= width
        model = browser.execute_script(
            "var c = document.querySelector('#result_list .evolink-model');"
            "return c.getClientRects().length && Math.round(c.getBoundingClientRect().height"
            " / parseFloat(getComputedStyle(c).lineHeight))")
        assert model <= 2, f"the model name wraps over {model} lines at {width}"
        browser.get(site.url + reverse("admin:{}_{}_change".format(*info), args=[task.pk]))
        _wait(browser, lambda d: d.find_elements("css selector", "#content-main form"),
              what="the change page")
        _screenshot(browser, f"admin-change-top-{width}x{height}.png")
        browser.execute_script(
            "document.querySelector('.inline-group').scrollIntoView({block: 'start'})")
        _screenshot(browser, f"admin-change-{width}x{height}.png")
        assert _scrolls_sideways(browser) <= 0, f"the change page scrolls sideways at {width}"
        overflow = browser.execute_script(
            "return Array.from(document.querySelectorAll('.inline-group, .inline-group "
            ".tabular, .inline-group fieldset')).map(g => g.scrollWidth - g.clientWidth)")
        assert overflow and max(overflow) <= 0, overflow
        # the object tools (buttons) do not cover the page's title
        title = browser.execute_script(
            "var h = document.querySelector('#content h2, #content h1');"
            "var t = document.querySelector('.object-tools');"
            "var a = h.getBoundingClientRect(), b = t.getBoundingClientRect();"
            "return a.bottom <= b.top || b.bottom <= a.top || a.right <= b.left")
        assert title, "the buttons cover the title"
