"""The admin in Japanese and Simplified Chinese: model names, field labels, statuses,
the usage page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from django_evolink.models import Status
from tests.support.admin import make_task

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ja", ["画像生成タスク", "処理中", "完了", "プロンプト", "ステータス",
                "Evolink から最新の状態を取得"]),
        ("zh-Hans", ["图像任务", "处理中", "已完成", "提示词", "状态", "从 Evolink 刷新状态"]),
    ],
)
def test_task_changelist_reads_naturally(su_client, admin_user, language, expected):
    make_task(admin_user, status=Status.PROCESSING, prompt="a red fox")
    make_task(admin_user, status=Status.COMPLETED, prompt="a blue fox")
    page = su_client.get(reverse("admin:django_evolink_imagetask_changelist"),
                         headers={"accept-language": language})
    assert page.status_code == 200
    html = page.content.decode()
    for text in expected:
        assert text in html, text
    assert "Processing" not in html and "Refresh from Evolink" not in html


def test_task_change_page_and_usage_page_in_japanese(su_client, admin_user):
    task = make_task(admin_user, status=Status.FAILED, prompt="a red fox",
                     error_code="content_policy_violation", error_message="refused")
    page = su_client.get(reverse("admin:django_evolink_imagetask_change", args=[task.pk]),
                         headers={"accept-language": "ja"})
    html = page.content.decode()
    assert page.status_code == 200
    for text in ("エラー", "管理情報（ローカル）", "失敗", "プロンプト"):
        assert text in html, text

    usage = su_client.get(reverse("admin:django_evolink_imagetask_usage"),
                          headers={"accept-language": "ja"})
    assert usage.status_code == 200
    html = usage.content.decode()
    assert "Evolink 利用状況" in html and "ユーザー別" in html and "CSV エクスポート" in html
