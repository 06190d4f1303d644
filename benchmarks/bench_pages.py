"""Benchmark 3: the list endpoint and the admin changelists with 100,000 tasks.

For SQLite and PostgreSQL (each in its own subprocess and scratch database), creates
100,000 tasks (with images and events, :func:`benchmarks.bench_admin.populate`) and
measures, for pages of 10 and 100 rows, the SQL statements and the p50 time of a page:

- ``GET /evolink/tasks/`` (DRF, session auth, a user owning ~2,000 tasks): first page,
  ``?status=completed``, page 10;
- the admin changelists and the usage view (:func:`benchmarks.bench_admin.run`).

The statement count must not depend on the page size (no N+1).

    python benchmarks/bench_pages.py                 # both databases, 100,000 tasks
    python benchmarks/bench_pages.py --quick         # 12,000 tasks, SQLite only
    python benchmarks/bench_pages.py --database sqlite --tasks 5000
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402

NAME = "pages"
DB_NAME = f"evolink_bench_pages_{os.getpid()}"  # unique: runs may overlap


def measure_api(repeat: int) -> list[dict]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from django_evolink.models import ImageTask

    user_model = get_user_model()
    # the bench user owning the most tasks
    counts = {u.pk: ImageTask.objects.filter(user=u).count()
              for u in user_model.objects.filter(username__startswith="bench-user-")[:5]}
    user = user_model.objects.get(pk=max(counts, key=counts.get))
    client = Client()
    client.force_login(user)
    deep = max(1, min(10, counts[user.pk] // 100))  # a full page of 100 rows exists
    pages = [("API tasks", {}), ("API tasks status=completed", {"status": "completed"}),
             (f"API tasks page {deep}", {"page": str(deep)})]
    results = []
    for per_page in (10, 100):
        for name, params in pages:
            params = {**params, "page_size": str(per_page)}
            client.get("/evolink/tasks/", params)
            times, queries = [], None
            for _ in range(repeat):
                with common.count_queries() as n:
                    start = time.perf_counter()
                    response = client.get("/evolink/tasks/", params)
                    times.append(time.perf_counter() - start)
                assert response.status_code == 200, (params, response.status_code)
                data = response.json()
                page_no = int(params.get("page", 1))
                expected = min(per_page, data["count"] - (page_no - 1) * per_page)
                assert len(data["results"]) == expected == per_page, "page not full"
                queries = n[0]
            results.append({"page": name, "per_page": per_page, "queries": queries,
                             "p50_seconds": round(statistics.median(times), 4),
                             "owned_tasks": counts[user.pk]})
            print(f"{name:28} {per_page:4} rows  {statistics.median(times) * 1000:8.1f} ms  "
                  f"{queries:3} queries", flush=True)
    connection.close()
    return results


def one_database(database: str, tasks: int, repeat: int) -> dict:
    """Child process: populate, measure, write ``pages-<database>.json``; returns data."""
    url = common.create_scratch_database(database, DB_NAME)
    try:
        common.setup_django(url)
        from benchmarks import bench_admin

        common.migrate()
        start = time.perf_counter()
        bench_admin.populate(tasks)
        print(f"{tasks} tasks created in {time.perf_counter() - start:.0f} s ({database})",
              flush=True)
        api = measure_api(repeat)
        admin = bench_admin.run(repeat)
        data = {"database": database, "tasks": tasks, "api": api, "admin": admin}
        common.RESULTS.mkdir(parents=True, exist_ok=True)
        (common.RESULTS / f"pages-{database}.json").write_text(json.dumps(data, indent=2))
        return data
    finally:
        common.drop_scratch_database(database, DB_NAME, remove_sqlite=True)


def summarise(all_data: list[dict]) -> list[dict]:
    rows = []
    for data in all_data:
        db = data["database"]
        for _kind, entries in (("API", data["api"]), ("admin", data["admin"])):
            by_page: dict[str, dict[int, dict]] = {}
            for entry in entries:
                by_page.setdefault(entry["page"], {})[entry["per_page"]] = entry
            for page, sizes in by_page.items():
                q10, q100 = sizes[10]["queries"], sizes[100]["queries"]
                label = page if page.startswith("API") else f"admin {page}"
                rows.append(common.row(
                    f"pages {db} ({data['tasks']:,} tasks)", label,
                    round(sizes[100]["p50_seconds"] * 1000, 1),
                    "ms p50 (100 rows)",
                    baseline=round(sizes[10]["p50_seconds"] * 1000, 1),
                    target=f"queries {q10} = {q100}", met=q10 == q100))
    return rows


def main() -> None:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    common.add_database_argument(
        parser, help="one database in this process (default: both, as subprocesses)")
    parser.add_argument("--quick", action="store_true", help="12,000 tasks, SQLite only")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.repeat = 12000, 2
    if args.database:
        one_database(args.database, args.tasks, args.repeat)
        return
    databases = ["sqlite"]
    if not args.quick and common.pg_available():
        databases.append("postgresql")
    all_data = []
    for database in databases:
        subprocess.run([sys.executable, __file__, "--database", database, "--tasks",
                        str(args.tasks), "--repeat", str(args.repeat)], check=True,
                       cwd=common.ROOT)
        all_data.append(json.loads((common.RESULTS / f"pages-{database}.json").read_text()))
    rows = summarise(all_data)
    common.print_table(rows)
    common.write_result(NAME, rows, details=all_data,
                        note="value: p50 ms of a 100-row page; baseline: of a 10-row page")


if __name__ == "__main__":
    main()
