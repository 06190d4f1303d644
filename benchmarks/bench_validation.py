"""Benchmark 6: validating a create body, per model, next to a bare DRF serializer.

For every image model of the catalogue, the p50 time of ``TaskCreateSerializer(data=...)
.is_valid()`` on a valid body that sets every parameter of the model (generated from the
catalogue, as the per-model tests do; image URLs are IP literals, so no DNS lookup is
timed). The baseline is a bare DRF serializer with the seed's three fields (``prompt``,
``image_urls``, ``n``) on the seed's body: what validation costs without the catalogue.

    python benchmarks/bench_validation.py            # 2,000 rounds per model
    python benchmarks/bench_validation.py --quick    # 50 rounds
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402

NAME = "validation"
#: The target: validating one create body stays under a millisecond (p50).
TARGET_MS = 1.0


def _p50(func, rounds: int) -> float:
    """Median milliseconds of ``func()`` over ``rounds`` calls (after 20 warm-up calls)."""
    for _ in range(20):
        func()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    return common.median(times)


def main() -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="50 rounds per model")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (50 if args.quick else 2000)
    common.setup_django()

    from rest_framework import serializers

    from django_evolink.api.serializers import TaskCreateSerializer
    from tests.support.catalogue_cases import IMAGE_MODELS, spec_of, valid_body

    class Bare(serializers.Serializer):
        prompt = serializers.CharField(max_length=2000)
        image_urls = serializers.ListField(child=serializers.URLField(), min_length=1,
                                           max_length=2)
        n = serializers.IntegerField(min_value=1, max_value=4, required=False)

    seed_body = valid_body(spec_of("wan2.5-image-to-image"))

    def bare() -> None:
        assert Bare(data=seed_body).is_valid()

    baseline = _p50(bare, rounds)
    rows = [common.row(NAME, "bare DRF serializer (seed's 3 fields)", round(baseline, 4),
                       "ms p50")]
    worst = 0.0
    for name in IMAGE_MODELS:
        body = {"model": name, **valid_body(spec_of(name))}

        def check(body=body) -> None:
            serializer = TaskCreateSerializer(data=body)
            assert serializer.is_valid(), serializer.errors

        value = _p50(check, rounds)
        worst = max(worst, value)
        rows.append(common.row(NAME, f"create body {name}", round(value, 4), "ms p50",
                               baseline=round(baseline, 4), target=f"< {TARGET_MS:g} ms",
                               met=value < TARGET_MS))
    common.print_table(rows)
    common.write_result(NAME, rows, rounds=rounds, worst_ms=round(worst, 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
