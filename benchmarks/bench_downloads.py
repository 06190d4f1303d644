"""Benchmark 4: memory of result downloads.

Four result images of ~10 MB each (PNG of random pixels, so they do not compress) are
served by a local HTTP server in this process. A worker subprocess then stores them:

- ``streamed``: :func:`django_evolink.background.downloads.download_task_images` (the real code);
- ``whole`` (baseline): the same images fetched with ``requests.get(url).content``,
  decoded with Pillow and saved to the same storage - the naive implementation.

Each worker reports its peak RSS growth: ``VmHWM`` (peak resident set) after the
downloads minus ``VmRSS`` before them, both from ``/proc/self/status``. Target: under
32 MB for the streamed worker (four 10 MB files are never held at once). Decoding one
image with Pillow (to check it) needs its pixels in memory (~10 MB here), which is part
of the streamed figure.

Completion -> images stored, with callbacks (issue 16): a worker posts the completion
callback of a task (``TRUST_CALLBACK_BODY = True``, through Django's request handler in
the process) whose results are the same images, and times the POST until the task's
``images_stored_at`` (the time the job wrote there: django-q2's sync mode returns from
the POST only after saving the job's result, which is no part of storing the images);
the download job runs as the completion's ``on_commit`` enqueue, in the same process
(django-q2 ``sync``: the broker's pick-up delay, 0.2 s with the ORM broker's default
``poll``, is not part of the figure). Baseline: the bare download time, the same images
fetched with ``requests.get(url).content`` one after the other. ``RUNS`` tasks each;
target p50 <= 1.5 x the baseline's p50.

    python benchmarks/bench_downloads.py           # 4 x 10 MB
    python benchmarks/bench_downloads.py --quick   # 4 x 2 MB
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402

NAME = "downloads"
TARGET_MB = 32
RUNS = 7  # completions timed (and bare downloads)
COMPLETION_TARGET = 1.5


def make_pngs(directory: Path, count: int, megabytes: float) -> list[Path]:
    from PIL import Image

    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    paths = []
    for i in range(count):
        image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        path = directory / f"result-{i}.png"
        image.save(path, format="PNG", compress_level=1)
        paths.append(path)
    return paths


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def rss_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(mode: str, db_url: str, media: str, urls: list[str]) -> None:
    """The worker: store the images, print ``{"growth_kb": ...}``."""
    common.setup_django(db_url, BENCH_MEDIA_ROOT=media)
    import io

    import requests
    from django.core.files.base import ContentFile
    from django.utils import timezone
    from PIL import Image

    from django_evolink import conf
    from django_evolink.background.downloads import download_task_images
    from django_evolink.models import GeneratedImage, ImageTask, Status, result_upload_to

    now = timezone.now()
    task = ImageTask.objects.create(
        evolink_id=f"task-unified-dl-{mode}-{time.time_ns()}", model="wan2.5-image-to-image",
        prompt="downloads", image_urls=["https://example.com/in.png"], n=len(urls),
        status=Status.COMPLETED, progress=100, completed_at=now)
    images = [GeneratedImage.objects.create(task=task, index=i, source_url=url,
                                            source_expires_at=now + timezone.timedelta(hours=24),
                                            next_download_at=now)
              for i, url in enumerate(urls)]
    Image.init()
    session = requests.Session()
    session.trust_env = False
    if mode in ("bare", "callback"):
        print(json.dumps({"mode": mode, "runs": timed(mode, task, session, urls)}), flush=True)
        return
    before = rss_kb("VmRSS")
    start = time.perf_counter()
    if mode == "streamed":
        counts = download_task_images(task.pk)
        stored = counts["stored"]
    else:
        stored = 0
        for image in images:
            data = session.get(image.source_url, timeout=60).content
            with Image.open(io.BytesIO(data)) as img:
                img.load()
            name = conf.storage().save(result_upload_to(image, "x.png"), ContentFile(data))
            GeneratedImage.objects.filter(pk=image.pk).update(file=name)
            stored += 1
    seconds = time.perf_counter() - start
    growth = rss_kb("VmHWM") - before
    sizes = [conf.storage().size(g.file.name)
             for g in GeneratedImage.objects.filter(task=task).exclude(file="")]
    print(json.dumps({"mode": mode, "growth_kb": growth, "stored": stored, "sizes": sizes,
                      "seconds": seconds}), flush=True)


def timed(mode: str, first: Any, session: Any, urls: list[str]) -> list[float]:
    """Seconds per run: ``bare`` GETs of every image; ``callback``: the completion
    callback of a fresh task until its images are stored."""
    from django.test import Client
    from django.utils import timezone

    from django_evolink.core import tokens
    from django_evolink.models import ImageTask, Status

    first.delete()
    client = Client()
    runs = []
    for i in range(RUNS + 1):  # the first run warms up (imports, connections)
        if mode == "bare":
            start = time.perf_counter()
            for url in urls:
                session.get(url, timeout=60).content  # noqa: B018 - the body is the work
            runs.append(time.perf_counter() - start)
            continue
        raw, digest = tokens.new_token()
        now = timezone.now()
        evolink_id = f"task-unified-dlcb{i}-{time.time_ns()}"
        task = ImageTask.objects.create(
            evolink_id=evolink_id, model="wan2.5-image-to-image", prompt="downloads",
            image_urls=["https://example.com/in.png"], n=len(urls), status=Status.PROCESSING,
            progress=60, callback_token_hash=digest, submit_started_at=now, submitted_at=now,
            next_poll_at=now + timezone.timedelta(hours=1))
        body = json.dumps({
            "created": int(time.time()), "id": evolink_id, "model": "wan2.5-image-to-image",
            "object": "image.generation.task", "progress": 100, "status": "completed",
            "type": "image", "results": urls,
            "task_info": {"can_cancel": False, "estimated_time": 0},
            "usage": {"billing_rule": "per_call", "credits_reserved": 1.2,
                      "user_group": "default"},
        })
        start, posted = time.perf_counter(), time.time()
        response = client.post(f"/evolink/callback/{raw}/", body,
                               content_type="application/json")
        while True:
            stored_at = ImageTask.objects.filter(pk=task.pk).values_list(
                "images_stored_at", flat=True).get()
            if stored_at is not None:
                break
            if time.perf_counter() - start > 120:
                raise SystemExit(f"images of {task.pk} not stored after 120 s "
                                 f"(callback answered {response.status_code})")
            time.sleep(0.005)
        # until the job marked the images stored, not until this loop looked: with
        # django-q2's sync mode the POST only returns once the job's result is saved
        runs.append(stored_at.timestamp() - posted)
        if response.status_code != 200:
            raise SystemExit(f"the callback answered {response.status_code}")
    return runs[1:]


def run(count: int, megabytes: float) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="evolink-bench-dl-") as tmp:
        root = Path(tmp)
        serve_dir = root / "serve"
        serve_dir.mkdir()
        paths = make_pngs(serve_dir, count, megabytes)
        total = sum(p.stat().st_size for p in paths)
        server = ThreadingHTTPServer(("127.0.0.1", 0),
                                     functools.partial(_Quiet, directory=str(serve_dir)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        urls = [f"{base}/{p.name}" for p in paths]
        db_url = f"sqlite:///{root / 'db.sqlite3'}"
        env = {**os.environ, "BENCH_DATABASE_URL": db_url,
               "DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
        subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], check=True,
                       cwd=common.ROOT, env=env)
        results = {}
        try:
            for mode in ("bare", "callback"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, "--db", db_url,
                     "--media", str(root / f"media-{mode}"), *urls],
                    check=True, cwd=common.ROOT, capture_output=True, text=True,
                    env={**env, "BENCH_TRUST_CALLBACK_BODY": "1", "BENCH_Q_SYNC": "1"})
                results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
                runs = results[mode]["runs"]
                print(f"{mode:8}: p50 {common.median(runs):.3f} s over {len(runs)} runs "
                      f"(min {min(runs):.3f}, max {max(runs):.3f})", flush=True)
            for mode in ("whole", "streamed"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, "--db", db_url,
                     "--media", str(root / f"media-{mode}"), *urls],
                    check=True, cwd=common.ROOT, capture_output=True, text=True, env=env)
                results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
                r = results[mode]
                print(f"{mode:8}: peak RSS growth {r['growth_kb'] / 1024:.1f} MB, stored "
                      f"{r['stored']}/{count} ({sum(r['sizes']) / 1e6:.1f} MB) in "
                      f"{r['seconds']:.2f} s", flush=True)
        finally:
            server.shutdown()
    streamed, whole = results["streamed"], results["whole"]
    ok = streamed["stored"] == count and sum(streamed["sizes"]) == total
    growth = streamed["growth_kb"] / 1024
    rows = [
        common.row(f"downloads ({count} x {megabytes:g} MB)", "peak RSS growth", round(growth, 1),
                   "MB", baseline=round(whole["growth_kb"] / 1024, 1),
                   target=f"< {TARGET_MB} MB", met=growth < TARGET_MB and ok),
        common.row(f"downloads ({count} x {megabytes:g} MB)", "time to store all",
                   round(streamed["seconds"], 2), "s", baseline=round(whole["seconds"], 2)),
    ]
    bare, completion = (common.median(results[m]["runs"]) for m in ("bare", "callback"))
    ratio = completion / bare
    rows.append(common.row(
        f"downloads ({count} x {megabytes:g} MB)",
        "completion callback -> images stored, p50 (baseline: bare download p50)",
        round(completion, 3), "s", baseline=round(bare, 3), ratio=ratio,
        target=f"<= {COMPLETION_TARGET} x", met=ratio <= COMPLETION_TARGET))
    common.print_table(rows)
    common.write_result(NAME, rows, images=count, bytes_total=total, details=results)
    return rows


def main() -> None:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--megabytes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="4 x 2 MB")
    parser.add_argument("--child", choices=["streamed", "whole", "bare", "callback"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--media", help=argparse.SUPPRESS)
    parser.add_argument("urls", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.db, args.media, args.urls)
        return
    if args.quick:
        args.megabytes = 2.0
    run(args.images, args.megabytes)


if __name__ == "__main__":
    main()
