"""The REST API in Japanese and Simplified Chinese: ``LocaleMiddleware`` picks the language
from ``Accept-Language``; field-keyed 400s and Evolink refusals answer in it."""

from __future__ import annotations

import pytest

from django_evolink.evolink.client import get_client
from tests.support.api import LIST_URL, PUBLIC_IMAGE, PUBLIC_IMAGE_2, image_bytes, set_evolink

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.support.api_fixtures"]

THREE_URLS = [PUBLIC_IMAGE, PUBLIC_IMAGE_2, "https://93.184.215.14/third.png"]


def create(api, language: str | None, **body):
    payload = {"prompt": "make it blue", "image_urls": [PUBLIC_IMAGE], **body}
    headers = {"accept-language": language} if language else {}
    return api.post(LIST_URL, payload, format="json", headers=headers)


@pytest.mark.parametrize(
    ("language", "too_many", "no_prompt", "content_language"),
    [
        ("ja", "wan2.5-image-to-image で指定できる画像は 2 枚までです。",
         "プロンプトは必須です", "ja"),
        ("zh-Hans", "wan2.5-image-to-image 最多只能使用 2 张图片。", "提示词为必填项", "zh-hans"),
        ("zh-CN,zh;q=0.9", "wan2.5-image-to-image 最多只能使用 2 张图片。", "提示词为必填项",
         "zh-hans"),
        (None, "At most 2 images for wan2.5-image-to-image.", "A prompt is required", "en"),
    ],
)
def test_field_keyed_400s_speak_the_callers_language(api, evolink_http, language, too_many,
                                                    no_prompt, content_language):
    response = create(api, language, image_urls=THREE_URLS)
    assert response.status_code == 400
    assert response.json()["image_urls"] == [too_many]
    assert response["Content-Language"] == content_language

    response = create(api, language, prompt="")
    assert response.status_code == 400
    assert no_prompt in " ".join(response.json()["prompt"])
    assert not [c for c in evolink_http.calls if c.request.method == "POST"]


@pytest.mark.parametrize(
    ("language", "url_problem"),
    [("ja", "プライベートアドレスまたはループバックアドレス"), ("zh-Hans", "私有地址或回环地址")],
)
def test_url_refusals_are_translated_with_their_image_number(api, evolink_http, language,
                                                            url_problem):
    response = create(api, language, image_urls=["https://127.0.0.1/a.png"])
    assert response.status_code == 400
    (message,) = response.json()["image_urls"]
    assert message.startswith("画像 1: " if language == "ja" else "图片 1：")
    assert url_problem in message


@pytest.fixture
def emulator_image(evolink_emulator):
    """A URL of an input image the emulator can download (uploaded to its files API)."""
    return get_client().upload_file(image_bytes(), file_name="in.png")["file_url"]


@pytest.mark.parametrize(
    ("evolink_status", "answer", "ja", "zh"),
    [
        (402, 503, "画像生成サービスは一時的に利用できません", "图像生成服务暂时不可用"),
        (401, 502, "サイト管理者による修正が必要です", "需要站点管理员修复"),
        (500, 502, "画像生成サービスでエラーが発生したか", "图像生成服务出错或无法连接"),
    ],
)
def test_evolink_refusals_answer_in_the_callers_language(
        api, evolink_emulator, emulator_image, evolink_status, answer, ja, zh):
    evolink_emulator.faults.add_error("create", evolink_status, count=None)
    for language, expected in (("ja", ja), ("zh-Hans", zh)):
        response = create(api, language, image_urls=[emulator_image])
        assert response.status_code == answer, response.content
        data = response.json()
        assert expected in data["detail"]
        assert data["task"]["status"] == "failed"  # the machine-readable parts stay as they are
        assert data["code"] in {"insufficient_quota_error", "authentication_error",
                                "internal_server_error"}


def test_a_rate_limit_answers_in_the_callers_language(api, evolink_emulator, emulator_image):
    evolink_emulator.faults.add_error("create", 429, count=None, retry_after=7)
    response = create(api, "ja", image_urls=[emulator_image])
    assert response.status_code == 429 and response["Retry-After"] == "7"
    assert "画像生成サービスが混み合っています" in response.json()["detail"]


def test_unknown_task_and_bad_filter_are_translated(api):
    response = api.get(LIST_URL, {"status": "nope"}, headers={"accept-language": "zh-Hans"})
    assert response.status_code == 400
    assert "未知状态 'nope'" in str(response.json())


@pytest.mark.parametrize(
    ("language", "seed", "watermark", "unknown"),
    [
        ("ja", "seed は 0〜2147483647にしてください。",
         "watermark は真偽値（true または false）で指定してください。",
         "quality は z-image-turbo のパラメーターではありません。"),
        ("zh-Hans", "seed 的取值范围：0 至 2147483647。",
         "watermark 必须是布尔值（true 或 false）。", "quality 不是 z-image-turbo 的参数。"),
    ],
)
def test_per_model_parameter_messages_are_translated(api, evolink_http, settings, language,
                                                     seed, watermark, unknown):
    set_evolink(settings, MODELS=None)  # every image model of the catalogue
    headers = {"accept-language": language}
    response = api.post(LIST_URL, {"model": "qwen-image-3.0", "prompt": "a fox", "seed": -1,
                                   "watermark": "yes"}, format="json", headers=headers)
    assert response.status_code == 400
    assert response.json()["seed"] == [seed]
    assert response.json()["watermark"] == [watermark]
    response = api.post(LIST_URL, {"model": "z-image-turbo", "prompt": "a fox", "quality": "2K"},
                        format="json", headers=headers)
    assert response.status_code == 400
    assert response.json()["quality"][0].startswith(unknown)
    assert not [c for c in evolink_http.calls if c.request.method == "POST"]
