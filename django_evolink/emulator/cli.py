"""Command line of the emulator, shared by ``python -m`` and ``manage.py evolink_emulator``."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .server import Emulator

from .server import Emulator

DESCRIPTION = """\
Run a local Evolink emulator: POST /v1/images/generations, GET /v1/tasks/{id},
GET /v1/credits, POST /api/v1/files/upload/stream, uploaded files and result images,
with Evolink's validation rules, error bodies, task lifecycle, callbacks (retried 1, 2
and 4 s after a failure), credits and a control API under /_emulator/. Point
EVOLINK["BASE_URL"] and EVOLINK["FILES_BASE_URL"] at the printed URL."""

EPILOG = """\
fault switches at run time (JSON POSTed to /_emulator/faults), e.g.
  curl -X POST URL/_emulator/faults -d '{"errors": [{"endpoint": "task", "status": 429,
       "count": 2, "retry_after": 1}]}'
  {"lose_create": {"count": 1, "mode": "timeout"|"reset"|"close", "hold": 60}}
  {"drop_callbacks": 1} {"duplicate_callbacks": {"times": 3}} {"reorder_callbacks": 1}
  {"delay_callbacks": {"seconds": 20}} {"fail_next": 1} {"cancel_next": 1}
other control endpoints: GET /_emulator/state, POST /_emulator/reset,
  POST /_emulator/clock {"advance": s, "speed": x, "manual": bool},
  GET|DELETE /_emulator/requests, GET|DELETE /_emulator/callbacks,
  GET /_emulator/tasks[/ID], POST /_emulator/tasks/ID/{fail,cancel,complete},
  POST /_emulator/credits {"credits": x}, POST /_emulator/expire-results {"task_id": ID}
endpoints for --latency/--error-rate: create, task, credits, upload, files, * (all)."""


def _endpoint_value(text: str) -> tuple[str, float]:
    endpoint, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected ENDPOINT=VALUE, got {text!r}")
    try:
        return endpoint.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every switch of the emulator to ``parser`` (also used by the Django command)."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1; the control API has no "
                             "authentication, do not expose it)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any)")
    parser.add_argument("--public-url", default=None,
                        help="origin written in the URLs handed out (default http://HOST:PORT)")
    parser.add_argument("--credits", type=float, default=1000.0,
                        help="initial credit balance (default 1000)")
    parser.add_argument("--price-per-image", type=float, default=1.2,
                        help="credits reserved and charged per image (default 1.2)")
    parser.add_argument("--api-key", action="append", dest="api_keys", metavar="KEY",
                        help="accepted API key (repeatable); default: any key starting sk-evo-")
    parser.add_argument("--allow-insecure-callbacks", action="store_true",
                        help="accept http:// and internal (localhost, 10.x, 192.168.x, ...) "
                             "callback URLs, for local development; Evolink refuses them")
    parser.add_argument("--no-private-urls", action="store_true",
                        help="refuse input image URLs on loopback/private hosts, as Evolink "
                             "(which cannot reach them) effectively does")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="emulated seconds per real second (default 1)")
    parser.add_argument("--task-seconds", type=float, default=30.0,
                        help="emulated seconds from create to the end of a task (default 30, "
                             "announced as task_info.estimated_time)")
    parser.add_argument("--result-ttl", type=float, default=86400.0,
                        help="emulated seconds result images stay downloadable (default 86400)")
    parser.add_argument("--upload-ttl", type=float, default=72 * 3600.0,
                        help="emulated seconds uploaded files stay downloadable (default 259200)")
    parser.add_argument("--callback-retry-delays", default="1,2,4",
                        help="emulated seconds before each callback retry (default 1,2,4)")
    parser.add_argument("--callback-timeout", type=float, default=10.0,
                        help="real seconds a callback receiver has to answer (default 10)")
    parser.add_argument("--latency", action="append", type=_endpoint_value, default=[],
                        metavar="ENDPOINT=SECONDS",
                        help="answer ENDPOINT after SECONDS (repeatable), e.g. task=0.5")
    parser.add_argument("--error-rate", action="append", type=_endpoint_value, default=[],
                        metavar="ENDPOINT=RATE",
                        help="answer --error-status to a fraction RATE of ENDPOINT's requests "
                             "(repeatable), e.g. task=0.1")
    parser.add_argument("--error-status", type=int, default=503,
                        help="status of --error-rate errors: 429, 500, 502 or 503 (default 503)")
    parser.add_argument("--fail-rate", type=float, default=0.0,
                        help="fraction of tasks that end failed (default 0)")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the error rates")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m django_evolink.emulator`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m django_evolink.emulator", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


class _Output(Protocol):
    """Where :func:`run` writes its banner (a text stream or Django's ``OutputWrapper``)."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


def make_emulator(options: dict[str, Any]) -> Emulator:
    """An :class:`Emulator` configured from parsed options (not started)."""
    delays = tuple(float(d) for d in str(options["callback_retry_delays"]).split(",") if d)
    emulator = Emulator(
        api_keys=options.get("api_keys") or None,
        credits=options["credits"],
        allow_insecure_callbacks=options["allow_insecure_callbacks"],
        allow_private_urls=not options["no_private_urls"],
        result_ttl=options["result_ttl"],
        upload_ttl=options["upload_ttl"],
        speed=options["speed"],
        task_duration=options["task_seconds"],
        price_per_image=options["price_per_image"],
        callback_retry_delays=delays,
        callback_timeout=options["callback_timeout"],
        seed=options.get("seed"),
        public_url=options.get("public_url"),
        fail_rate=options.get("fail_rate") or 0.0,
    )
    for endpoint, seconds in options.get("latency") or []:
        emulator.faults.set_latency(endpoint, seconds)
    for endpoint, rate in options.get("error_rate") or []:
        emulator.faults.set_error_rate(endpoint, rate, options["error_status"])
    return emulator


class StartError(Exception):
    """The emulator could not listen (the port is taken, the host is not ours, ...).

    ``in_use`` says the port is taken (the Django command words that case itself).
    """

    def __init__(self, message: str, *, host: str, port: int, in_use: bool = False) -> None:
        super().__init__(message)
        self.host, self.port, self.in_use = host, port, in_use


def start_error(host: str, port: int, exc: OSError) -> StartError:
    """One line saying why ``host:port`` could not be used and what to do instead."""
    if exc.errno == errno.EADDRINUSE:
        return StartError(
            f"port {port} on {host} is already in use (another emulator or server?): stop "
            f"it, or choose another port with --port, e.g. --port {port + 1} (--port 0 picks "
            "a free one)", host=host, port=port, in_use=True,
        )
    if exc.errno == errno.EACCES:
        return StartError(f"no permission to listen on {host}:{port}: use --port above 1023",
                          host=host, port=port)
    reason = exc.strerror or str(exc)
    return StartError(f"cannot listen on {host}:{port}: {reason}; check --host and --port",
                      host=host, port=port)


def run(options: dict[str, Any], out: _Output | None = None) -> int:
    """Start an emulator from ``options`` and serve until Ctrl-C.

    Raises :class:`StartError` (one line, with the fix) when it cannot listen.
    """
    out = out or sys.stdout
    emulator = make_emulator(options)
    try:
        emulator.start(options["host"], options["port"])
    except OSError as exc:
        raise start_error(options["host"], options["port"], exc) from None
    out.write(
        f"Evolink emulator on {emulator.url}\n"
        f"  EVOLINK = {{'BASE_URL': '{emulator.url}', 'FILES_BASE_URL': '{emulator.url}', "
        "'API_KEY': 'sk-evo-emulator', 'ALLOW_PRIVATE_URLS': True}\n"
        f"  control API: {emulator.url}/_emulator/state   (Ctrl-C to stop)\n"
    )
    out.flush()
    try:
        emulator.block()
    finally:
        emulator.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m django_evolink.emulator``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = build_parser()
    options = vars(parser.parse_args(argv))
    try:
        return run(options)
    except StartError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 2
