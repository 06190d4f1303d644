"""Run the Evolink emulator in its own process for a benchmark (so that its CPU time is
not taken from the process being measured).

``python benchmarks/_emulator_proc.py --tasks N --latency task=0.05`` starts an
:class:`~django_evolink.emulator.Emulator` on a free loopback port, adds ``N`` unfinished
tasks ``task-unified-1700000000-bench000000``... directly to its state (as if they had been
created 10 s ago, still ``processing`` for ~2 months), prints one JSON line ``{"url": ...}`` and
serves until its standard input closes. Counts come from the control API
(``/_emulator/requests``).

The tasks are ordinary emulator tasks: a status request brings only the task asked for
up to date, and the clock's tick finds the tasks whose time is up in a heap, so 10,000
unfinished tasks cost the emulator nothing per request (before, every request walked
them all, ~5 ms each, and the benchmark had to preload them "frozen").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django_evolink.emulator import Emulator, Task  # noqa: E402

#: The evolink id of the i-th preloaded task.
TASK_ID = "task-unified-1700000000-bench{:06d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=0, help="unfinished tasks to preload")
    parser.add_argument("--latency", action="append", default=[], metavar="ENDPOINT=SECONDS")
    parser.add_argument("--allow-insecure-callbacks", action="store_true")
    args = parser.parse_args()

    emu = Emulator(credits=1e9, allow_insecure_callbacks=args.allow_insecure_callbacks)
    now = emu.clock.now()
    for i in range(args.tasks):
        # Created 10 s ago, finishing in ~2 months: "processing" for the whole run.
        emu.tasks.add(Task(
            id=TASK_ID.format(i), status="processing", progress=1,
            model="wan2.5-image-to-image", prompt="benchmark", n=1,
            image_urls=["https://example.com/in.png"], callback_url=None, created=now - 10,
            duration=5e6, credits_reserved=1.2, base_url="",
        ))
    for item in args.latency:
        endpoint, _, seconds = item.partition("=")
        emu.faults.set_latency(endpoint, float(seconds))
    emu.start()
    for task in emu.tasks.values():
        task.base_url = emu.url
    print(json.dumps({"url": emu.url}), flush=True)
    sys.stdin.read()  # until the parent closes the pipe (or dies)
    emu.stop()


if __name__ == "__main__":
    main()
