"""Time the admin changelists with 100,000 image tasks.

Usage (from the repository root)::

    python benchmarks/bench_admin.py                      # SQLite file DB in /tmp
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python benchmarks/bench_admin.py

Options: ``--tasks N`` (default 100000), ``--repeat R`` (default 3),
``--sqlite-path PATH``. Use a scratch database: the script migrates it and keeps its
rows between runs (only the missing tasks are created, with ``bulk_create``).

For each page (task list unfiltered / filtered by status / searched, event list) and each
page size (10 and 100 rows) it prints the best time of ``R`` requests through Django's
test ``Client`` and the number of SQL queries, then writes everything as JSON to
``benchmarks/results/admin-<vendor>.json``. Evolink's credit balance is answered by
``responses`` (no network).
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _common as common  # noqa: E402


def configure(sqlite_path: str) -> None:
    import django
    from django.conf import settings

    from tests import settings as test_settings

    values = {k: getattr(test_settings, k) for k in dir(test_settings) if k.isupper()}
    if not os.environ.get("DATABASE_URL"):
        values["DATABASES"] = {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path}
        }
    values["PASSWORD_HASHERS"] = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    values["DEBUG"] = False
    settings.configure(**values)
    django.setup()


def populate(total: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from django_evolink.models import GeneratedImage, ImageTask, Status, TaskEvent

    user_model = get_user_model()
    users = list(user_model.objects.filter(username__startswith="bench-user-"))
    if len(users) < 50:
        user_model.objects.bulk_create(
            [user_model(username=f"bench-user-{i}", email=f"bench{i}@example.com")
             for i in range(len(users), 50)]
        )
        users = list(user_model.objects.filter(username__startswith="bench-user-"))
    existing = ImageTask.objects.count()
    missing = total - existing
    if missing <= 0:
        print(f"{existing} tasks already present")
        return
    print(f"creating {missing} tasks ...", flush=True)
    rng = random.Random(42)
    statuses = [Status.COMPLETED] * 6 + [Status.FAILED, Status.PROCESSING, Status.PENDING,
                                         Status.CANCELLED]
    words = ["fox", "owl", "city", "mug", "portrait", "forest", "neon", "marble", "sea"]
    now = timezone.now()
    batch = 5000
    for start in range(0, missing, batch):
        tasks, images, events = [], [], []
        for _ in range(min(batch, missing - start)):
            status = rng.choice(statuses)
            created = now - timedelta(seconds=rng.randint(0, 365 * 86400))
            task = ImageTask(
                id=uuid.uuid4(),
                user=rng.choice(users + [None]),
                evolink_id=f"task-unified-{uuid.uuid4().hex}",
                model="wan2.5-image-to-image",
                prompt=" ".join(rng.choice(words) for _ in range(12)),
                image_urls=["https://files.evolink.ai/in/photo.png"],
                status=status,
                progress=100 if status in (Status.COMPLETED, Status.FAILED,
                                           Status.CANCELLED) else 40,
                credits_reserved=Decimal("1.2"),
                billing_rule="per_call",
                created_at=created,
                error_code="upstream_error" if status == Status.FAILED else "",
            )
            tasks.append(task)
            if status == Status.COMPLETED:
                images.append(GeneratedImage(
                    task=task, index=0,
                    source_url=f"https://files.evolink.ai/results/{task.evolink_id}/0.png",
                    source_expires_at=created + timedelta(hours=24),
                    file=f"evolink/results/{task.id}/0.png" if rng.random() < 0.9 else "",
                ))
            events.append(TaskEvent(task=task, source="poll", received_at=created,
                                    payload={"id": task.evolink_id, "status": status},
                                    outcome="applied", changed=True,
                                    status_before="pending", status_after=status))
        with transaction.atomic():
            ImageTask.objects.bulk_create(tasks)
            GeneratedImage.objects.bulk_create(images)
            TaskEvent.objects.bulk_create(events)
        print(f"  {start + len(tasks)} / {missing}", flush=True)
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for model in (ImageTask, GeneratedImage, TaskEvent):
                cursor.execute(f"ANALYZE {model._meta.db_table}")


def run(repeat: int) -> list[dict]:
    import responses
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from django_evolink.models import ImageTask, TaskEvent
    from tests.support import evolink_samples as samples

    user_model = get_user_model()
    root = user_model.objects.filter(username="bench-root").first()
    if root is None:
        root = user_model.objects.create_superuser("bench-root", "root@example.com", "x")
    client = Client()
    client.force_login(root)
    pages = [
        ("tasks", "/admin/django_evolink/imagetask/", {}),
        ("tasks status=completed", "/admin/django_evolink/imagetask/",
         {"status__exact": "completed"}),
        ("tasks search 'fox owl'", "/admin/django_evolink/imagetask/", {"q": "fox owl"}),
        ("tasks page 50", "/admin/django_evolink/imagetask/", {"p": "50"}),
        ("events", "/admin/django_evolink/taskevent/", {}),
        ("usage (30 days)", "/admin/django_evolink/imagetask/usage/", {}),
    ]
    results = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, "https://api.evolink.test/v1/credits",
                 json=samples.credits_answer())
        for per_page in (10, 100):
            for model in (ImageTask, TaskEvent):
                admin.site._registry[model].list_per_page = per_page
            for name, url, params in pages:
                client.get(url, params)  # warm caches (credit balance, connections)
                best, queries, times = None, None, []
                for _ in range(repeat):
                    with CaptureQueriesContext(connection) as ctx:
                        start = time.perf_counter()
                        response = client.get(url, params)
                        elapsed = time.perf_counter() - start
                    assert response.status_code == 200, (url, params, response.status_code)
                    best = elapsed if best is None else min(best, elapsed)
                    times.append(elapsed)
                    queries = len(ctx.captured_queries)
                row = {"page": name, "per_page": per_page, "seconds": round(best, 4),
                       "p50_seconds": round(statistics.median(times), 4), "queries": queries}
                results.append(row)
                print(f"{name:28} {per_page:4} rows  {best * 1000:8.1f} ms  {queries:3} queries",
                      flush=True)
    return results


def main() -> None:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sqlite-path", default="/tmp/django_evolink_bench_admin.sqlite3")
    args = parser.parse_args()
    configure(args.sqlite_path)

    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    populate(args.tasks)
    print(f"database: {connection.vendor}", flush=True)
    results = run(args.repeat)
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"admin-{connection.vendor}.json"
    import django

    out.write_text(json.dumps({
        "benchmark": "admin changelist",
        "tasks": args.tasks,
        "database": connection.vendor,
        "python": platform.python_version(),
        "django": django.get_version(),
        "results": results,
    }, indent=2) + "\n", encoding="utf-8")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
