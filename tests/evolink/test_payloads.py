"""Unit tests of Evolink payloads read as data (:mod:`django_evolink.evolink.payloads`).

``tests/core/test_transitions.py`` checks that malformed deliveries are recorded and
change nothing in the database; here each field's rule is pinned at its boundaries on
``parse_payload`` alone, and ``storable`` is checked value by value. No database.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest

from django_evolink.core.transitions import apply_payload
from django_evolink.evolink.payloads import (
    ERROR_STATUSES,
    EVOLINK_STATUSES,
    MALFORMED,
    UNKNOWN_STATUS,
    PayloadError,
    Update,
    parse_payload,
    storable,
)
from django_evolink.models import ImageTask

ID = "task-unified-1757156493-imcg5zqt"
URL = "https://files.evolink.ai/r/0.png"


def body(status: str = "processing", **fields: Any) -> dict[str, Any]:
    """A minimal valid task object plus ``fields``."""
    return {"id": ID, "status": status, **fields}


def malformed(payload: Any) -> PayloadError:
    """Parse ``payload``, expecting a ``malformed`` refusal; return the error."""
    with pytest.raises(PayloadError) as info:
        parse_payload(payload)
    assert info.value.outcome == MALFORMED
    return info.value


def url_of_length(n: int) -> str:
    prefix = "https://files.evolink.ai/"
    return prefix + "a" * (n - len(prefix))


# --- the error type and the constants --------------------------------------------------


def test_outcomes_are_the_event_outcome_values() -> None:
    """The refusal reasons are spelt as ``EventOutcome`` stores them."""
    from django_evolink.models import EventOutcome

    assert MALFORMED == EventOutcome.MALFORMED == "malformed"
    assert UNKNOWN_STATUS == EventOutcome.UNKNOWN_STATUS == "unknown_status"


def test_payload_error_is_a_value_error_with_an_outcome() -> None:
    """``PayloadError`` is a ``ValueError`` carrying ``outcome`` and a message."""
    err = PayloadError(MALFORMED, "why")
    assert isinstance(err, ValueError)
    assert err.outcome == MALFORMED and str(err) == "why"


def test_the_status_sets() -> None:
    """Evolink's five statuses; errors are read only for failed and cancelled."""
    assert sorted(EVOLINK_STATUSES) == ["cancelled", "completed", "failed", "pending",
                                        "processing"]
    assert sorted(ERROR_STATUSES) == ["cancelled", "failed"]


# --- envelope: object, id, status ------------------------------------------------------


def test_minimal_payload_gives_a_bare_update() -> None:
    """Only id and status: every other field of the Update is None."""
    assert parse_payload({"id": ID, "status": "pending"}) == Update(
        status="pending", evolink_id=ID
    )


def test_full_payload_is_read_field_by_field() -> None:
    """A complete task object fills every field, normalised."""
    update = parse_payload(
        body(
            "completed",
            progress=100,
            usage={"billing_rule": "per_call", "credits_reserved": 2.5, "user_group": "vip"},
            task_info={"estimated_time": 45, "can_cancel": False},
            results=[URL],
            model="wan2.5-image-to-image",
            created=1757156493,
        )
    )
    assert update == Update(
        status="completed",
        evolink_id=ID,
        progress=100,
        billing_rule="per_call",
        credits_reserved=Decimal("2.5000"),
        user_group="vip",
        estimated_time=45,
        can_cancel=False,
        results=[URL],
    )


@pytest.mark.parametrize("payload", [(), "{}", 1, b"{}", {ID, "pending"}])
def test_non_object_payload_is_malformed(payload: Any) -> None:
    """Only a JSON object is a task object."""
    malformed(payload)


@pytest.mark.parametrize("length", [1, 127, 128])
def test_id_up_to_128_characters_is_accepted(length: int) -> None:
    """The id is kept verbatim up to the 128 characters the column holds."""
    evo_id = "t" * length
    assert parse_payload({"id": evo_id, "status": "pending"}).evolink_id == evo_id


@pytest.mark.parametrize("evo_id", ["", "t" * 129, None, 12, 1.5, ["t"], {"id": "t"}, True])
def test_bad_id_is_malformed(evo_id: Any) -> None:
    """An empty, over-long or non-string id is malformed."""
    malformed({"id": evo_id, "status": "pending"})


@pytest.mark.parametrize("status", sorted(EVOLINK_STATUSES))
def test_each_evolink_status_is_accepted(status: str) -> None:
    """Each of Evolink's statuses parses to itself."""
    assert parse_payload(body(status)).status == status


@pytest.mark.parametrize("status", [None, 1, ["pending"], {"status": "pending"}, True])
def test_non_string_status_is_malformed(status: Any) -> None:
    """A missing or non-string status is malformed, not an unknown status."""
    malformed({"id": ID, "status": status})


@pytest.mark.parametrize(
    "status",
    ["exploded", "", "Completed", "COMPLETED", " completed", "completed\n", "queued",
     "timeout", "succeeded"],
)
def test_unknown_status_string(status: str) -> None:
    """Any other string (case and whitespace exact; our own statuses too) is unknown."""
    with pytest.raises(PayloadError) as info:
        parse_payload(body(status))
    assert info.value.outcome == UNKNOWN_STATUS


def test_unknown_status_message_is_bounded() -> None:
    """A huge status string is not copied whole into the message."""
    with pytest.raises(PayloadError) as info:
        parse_payload(body("x" * 10_000))
    assert "x" * 32 in str(info.value)
    assert "x" * 33 not in str(info.value)


def test_unknown_status_is_reported_before_the_fields_are_checked() -> None:
    """An unknown status wins over malformed fields (it is what the event records)."""
    with pytest.raises(PayloadError) as info:
        parse_payload(body("exploded", progress=500, results="nope"))
    assert info.value.outcome == UNKNOWN_STATUS


def test_a_bad_id_wins_over_an_unknown_status() -> None:
    """Without a usable id the payload is malformed, whatever its status."""
    malformed({"id": "", "status": "exploded"})


def test_unknown_top_level_keys_are_ignored() -> None:
    """Extra keys (object, type, model, ...) neither fail nor leak into the Update."""
    update = parse_payload(body("pending", object="x", type="image", extra={"a": [1]}))
    assert update == Update(status="pending", evolink_id=ID)


# --- progress ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(None, None), (0, 0), (1, 1), (99, 99), (100, 100), (40.0, 40), (100.0, 100), (0.0, 0)],
)
def test_progress_is_an_integer_percentage(progress: Any, expected: int | None) -> None:
    """0..100 inclusive; an integral float is taken as its integer."""
    value = parse_payload(body(progress=progress)).progress
    assert value == expected
    assert value is None or type(value) is int


def test_absent_progress_is_none() -> None:
    """No ``progress`` key: None (unknown), not 0."""
    assert parse_payload(body()).progress is None


@pytest.mark.parametrize(
    "progress",
    [-1, 101, -0.5, 100.5, 40.5, 10**100, True, False, math.nan, math.inf, -math.inf,
     "40", [40], {"value": 40}],
)
def test_bad_progress_is_malformed(progress: Any) -> None:
    """Outside 0..100, fractional, boolean, non-finite or not a number: malformed."""
    malformed(body(progress=progress))


# --- usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("usage", ["per_call", [], 1, True])
def test_non_object_usage_is_malformed(usage: Any) -> None:
    """``usage`` must be an object."""
    malformed(body(usage=usage))


def test_empty_usage_sets_nothing() -> None:
    """An empty usage object leaves its three fields None."""
    update = parse_payload(body(usage={}))
    assert (update.billing_rule, update.credits_reserved, update.user_group) == (None,) * 3


@pytest.mark.parametrize(("key", "limit"), [("billing_rule", 32), ("user_group", 64)])
def test_usage_strings_up_to_their_column_length(key: str, limit: int) -> None:
    """billing_rule (32) and user_group (64) are kept up to the length the column holds."""
    for value in ("", "x", "x" * limit):
        assert getattr(parse_payload(body(usage={key: value})), key) == value
    malformed(body(usage={key: "x" * (limit + 1)}))


@pytest.mark.parametrize("key", ["billing_rule", "user_group"])
@pytest.mark.parametrize("value", [1, 1.5, True, ["x"], {"x": 1}])
def test_non_string_usage_strings_are_malformed(key: str, value: Any) -> None:
    """billing_rule and user_group must be strings."""
    malformed(body(usage={key: value}))


@pytest.mark.parametrize(
    ("credits", "expected"),
    [
        (0, Decimal("0.0000")),
        (3, Decimal("3.0000")),
        (1.2, Decimal("1.2000")),
        (0.1, Decimal("0.1000")),
        ("1.2", Decimal("1.2000")),
        ("0", Decimal("0.0000")),
        ("7", Decimal("7.0000")),
        ("1.23456", Decimal("1.2346")),
        (1.23454, Decimal("1.2345")),
        ("1e3", Decimal("1000.0000")),
    ],
)
def test_credits_reserved_is_a_decimal_with_four_places(credits: Any, expected: Decimal) -> None:
    """Numbers and numeric strings become a Decimal quantised to 4 places (floats via str)."""
    value = parse_payload(body(usage={"credits_reserved": credits})).credits_reserved
    assert type(value) is Decimal
    assert value == expected
    assert value.as_tuple().exponent == -4


def test_absent_credits_reserved_is_none() -> None:
    """No credits key (or null): None."""
    assert parse_payload(body(usage={"credits_reserved": None})).credits_reserved is None
    assert parse_payload(body(usage={"billing_rule": "x"})).credits_reserved is None


@pytest.mark.parametrize(
    "credits",
    [-1, -0.001, "-1", "-0.5", math.nan, math.inf, -math.inf, "NaN", "nan", "sNaN",
     "Infinity", "-Infinity", "inf", "lots", "", "1,5", "1e30", True, False, [1], {"v": 1}],
)
def test_bad_credits_reserved_is_malformed(credits: Any) -> None:
    """Negative, non-finite, unparsable, boolean or non-scalar credits: malformed."""
    malformed(body(usage={"credits_reserved": credits}))


@pytest.mark.parametrize("credits", ["1e12", 1e12, "99999999999.9999", "10000000000", "1e20"])
def test_credits_larger_than_the_column_holds_are_malformed(credits: Any) -> None:
    """More than ImageTask.credits_reserved holds (14 digits, 4 decimals) is refused as
    malformed: stored, it made the task unreadable on SQLite (InvalidOperation)."""
    malformed(body(usage={"credits_reserved": credits}))


def test_the_largest_credit_amount_the_column_holds_is_kept() -> None:
    value = parse_payload(body(usage={"credits_reserved": "9999999999.9999"})).credits_reserved
    assert value == Decimal("9999999999.9999")


@pytest.mark.django_db
def test_a_huge_credit_amount_never_reaches_the_database() -> None:
    """End to end: the delivery is recorded as malformed and the task stays readable."""
    task = ImageTask.objects.create(prompt="p", image_urls=[], evolink_id="task-big",
                                    status="pending")
    result = apply_payload(task, {"id": "task-big", "status": "processing",
                                  "usage": {"credits_reserved": "1e12"}}, source="poll")
    assert result.outcome == "malformed"
    assert ImageTask.objects.get(pk=task.pk).credits_reserved is None


# --- task_info -----------------------------------------------------------------------------


@pytest.mark.parametrize("info", ["x", [], 3, True])
def test_non_object_task_info_is_malformed(info: Any) -> None:
    """``task_info`` must be an object."""
    malformed(body(task_info=info))


def test_empty_task_info_sets_nothing() -> None:
    """An empty task_info leaves estimated_time and can_cancel None."""
    update = parse_payload(body(task_info={}))
    assert update.estimated_time is None and update.can_cancel is None


@pytest.mark.parametrize(("seconds", "expected"), [(0, 0), (30, 30), (30.0, 30), (10**7, 10**7)])
def test_estimated_time_within_range(seconds: Any, expected: int) -> None:
    """estimated_time is an integer number of seconds in 0..10**7."""
    value = parse_payload(body(task_info={"estimated_time": seconds})).estimated_time
    assert value == expected and type(value) is int


@pytest.mark.parametrize(
    "seconds", [-1, 10**7 + 1, 30.5, math.nan, math.inf, "30", True, [30]]
)
def test_bad_estimated_time_is_malformed(seconds: Any) -> None:
    """Negative, above 10**7, fractional, non-finite or non-numeric: malformed."""
    malformed(body(task_info={"estimated_time": seconds}))


@pytest.mark.parametrize("flag", [True, False])
def test_can_cancel_is_a_boolean(flag: bool) -> None:
    """can_cancel keeps True and False (False is not dropped as falsy)."""
    assert parse_payload(body(task_info={"can_cancel": flag})).can_cancel is flag


@pytest.mark.parametrize("flag", [1, 0, "true", "false", [], {}])
def test_non_boolean_can_cancel_is_malformed(flag: Any) -> None:
    """can_cancel must be a real boolean (not 1/0 or a string)."""
    malformed(body(task_info={"can_cancel": flag}))


# --- results -------------------------------------------------------------------------------


def test_results_are_kept_in_order() -> None:
    """Result URLs are kept as given, in order."""
    urls = [f"https://files.evolink.ai/r/{i}.png" for i in range(3)]
    assert parse_payload(body("completed", results=urls)).results == urls


def test_results_are_a_copy() -> None:
    """The Update holds its own list, not the payload's."""
    urls = [URL]
    update = parse_payload(body("completed", results=urls))
    urls.append("https://evil.example/x.png")
    assert update.results == [URL]


def test_empty_and_absent_results() -> None:
    """``[]`` stays an empty list; no key (or null) is None."""
    assert parse_payload(body("completed", results=[])).results == []
    assert parse_payload(body("completed")).results is None
    assert parse_payload(body("completed", results=None)).results is None


def test_up_to_16_results() -> None:
    """Sixteen results are accepted, seventeen are malformed."""
    urls = [f"https://files.evolink.ai/r/{i}.png" for i in range(17)]
    assert parse_payload(body("completed", results=urls[:16])).results == urls[:16]
    malformed(body("completed", results=urls))


@pytest.mark.parametrize("results", [URL, {"0": URL}, (URL,), 1, True])
def test_non_list_results_are_malformed(results: Any) -> None:
    """results must be a list."""
    malformed(body("completed", results=results))


@pytest.mark.parametrize("item", [None, 1, {"url": URL}, [URL], b"https://x/1.png"])
def test_non_string_result_is_malformed(item: Any) -> None:
    """Every result must be a string."""
    malformed(body("completed", results=[URL, item]))


def test_result_url_length_limit_is_2048() -> None:
    """A result URL of 2048 characters is accepted, 2049 is malformed."""
    assert parse_payload(body("completed", results=[url_of_length(2048)])).results
    malformed(body("completed", results=[url_of_length(2049)]))


@pytest.mark.parametrize(
    "url", ["http://files.evolink.ai/r.png", "https://files.evolink.ai/r.png",
            "HTTPS://files.evolink.ai/r.png"]
)
def test_http_and_https_results_are_accepted(url: str) -> None:
    """http and https (any case) are the result schemes."""
    assert parse_payload(body("completed", results=[url])).results == [url]


@pytest.mark.parametrize(
    "url",
    ["ftp://files.evolink.ai/r.png", "javascript:alert(1)", "data:image/png;base64,AAAA",
     "gopher://x/", "//files.evolink.ai/r.png", "/r/0.png", "r.png", "", "httpx://x/r.png"],
)
def test_other_result_schemes_are_malformed(url: str) -> None:
    """Anything but an absolute http(s) URL is refused, wherever it is in the list."""
    malformed(body("completed", results=[URL, url]))


# --- error -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(ERROR_STATUSES))
def test_error_object_gives_code_and_message(status: str) -> None:
    """For failed/cancelled, ``error.type`` is the code and ``error.message`` the message."""
    update = parse_payload(body(status, error={"type": "content_policy", "message": "refused"}))
    assert (update.error_code, update.error_message) == ("content_policy", "refused")


def test_error_code_falls_back_to_code() -> None:
    """Without ``type``, ``code`` is the error code (stringified)."""
    assert parse_payload(body("failed", error={"code": "E42"})).error_code == "E42"
    assert parse_payload(body("failed", error={"code": 500})).error_code == "500"
    assert parse_payload(body("failed", error={"type": "", "code": "E1"})).error_code == "E1"


def test_a_string_error_code_wins_over_type() -> None:
    """A failed task's ``error.code`` is Evolink's string code (evolink-api.md §7)."""
    update = parse_payload(body("failed", error={"type": "quota", "code": "E42"}))
    assert update.error_code == "E42"
    update = parse_payload(body("failed", error={"code": "content_policy_violation",
                                                 "message": "refused"}))
    assert (update.error_code, update.error_message) == ("content_policy_violation", "refused")


def test_a_numeric_error_code_gives_way_to_type() -> None:
    """An error shaped like an API error (numeric code) is named by its ``type``."""
    update = parse_payload(body("failed", error={"type": "upstream_error", "code": 502}))
    assert update.error_code == "upstream_error"
    assert parse_payload(body("failed", error={"code": 502})).error_code == "502"


def test_error_code_and_message_are_truncated() -> None:
    """The code is cut to 64 characters and the message to 2000 (the column sizes)."""
    update = parse_payload(body("failed", error={"type": "c" * 65, "message": "m" * 2001}))
    assert update.error_code == "c" * 64
    assert update.error_message == "m" * 2000


def test_error_code_and_message_at_their_limits_are_kept() -> None:
    """Exactly 64 / 2000 characters are kept whole."""
    update = parse_payload(body("failed", error={"type": "c" * 64, "message": "m" * 2000}))
    assert update.error_code == "c" * 64
    assert update.error_message == "m" * 2000


@pytest.mark.parametrize(
    "error", [{}, {"type": "", "message": ""}, {"type": None, "message": None}]
)
def test_empty_error_object_gives_none(error: dict) -> None:
    """An empty error object leaves code and message None (so defaults apply later)."""
    update = parse_payload(body("failed", error=error))
    assert update.error_code is None and update.error_message is None


@pytest.mark.parametrize("status", sorted(ERROR_STATUSES))
def test_error_string_is_the_message(status: str) -> None:
    """A plain-string error is the message, without a code."""
    update = parse_payload(body(status, error="out of credits"))
    assert update.error_message == "out of credits"
    assert update.error_code is None


def test_error_string_is_truncated() -> None:
    """A plain-string error is cut to 2000 characters."""
    assert parse_payload(body("failed", error="e" * 5000)).error_message == "e" * 2000


@pytest.mark.parametrize("error", [42, ["boom"], True, None])
def test_other_error_shapes_are_ignored(error: Any) -> None:
    """An error that is neither object nor string is ignored, not malformed."""
    update = parse_payload(body("failed", error=error))
    assert update.error_code is None and update.error_message is None


@pytest.mark.parametrize("status", ["pending", "processing", "completed"])
@pytest.mark.parametrize("error", [{"type": "x", "message": "y"}, "boom"])
def test_error_is_ignored_unless_failed_or_cancelled(status: str, error: Any) -> None:
    """An error on a live or completed task is not read."""
    update = parse_payload(body(status, error=error, results=[URL]))
    assert update.error_code is None and update.error_message is None


# --- storable --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -7, 10**30, 1.5, 0.0, -1e308, "", "plain", "é😀\ufffd",
     [], {}, [1, "a", None], {"a": {"b": [1, 2, {"c": "d"}]}}],
)
def test_storable_leaves_clean_json_unchanged(value: Any) -> None:
    """Values every database stores come back equal, with their types."""
    result = storable(value)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\x00", "\ufffd"),
        ("a\x00b\x00", "a\ufffdb\ufffd"),
        ("\ud800", "\ufffd"),
        ("\udbff", "\ufffd"),
        ("\udc00", "\ufffd"),
        ("\udfff", "\ufffd"),
        ("x\ud83dy", "x\ufffdy"),
        ("\x00\udfff", "\ufffd\ufffd"),
    ],
)
def test_storable_replaces_nul_and_lone_surrogates(value: str, expected: str) -> None:
    """NUL and every code point of U+D800..U+DFFF become U+FFFD, one for one."""
    assert storable(value) == expected


@pytest.mark.parametrize("value", ["\ud7ff", "\ue000", "\x01", "\x7f", "\U0001f600", "\ufffd"])
def test_storable_keeps_neighbours_of_the_replaced_ranges(value: str) -> None:
    """Just outside the surrogate range, other control characters and astral characters stay."""
    assert storable(value) == value


@pytest.mark.parametrize(
    ("value", "expected"), [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")]
)
def test_storable_turns_non_finite_floats_into_strings(value: float, expected: str) -> None:
    """NaN and the infinities (refused by jsonb) become strings."""
    assert storable(value) == expected


def test_storable_keeps_other_scalars_as_they_are() -> None:
    """Decimals and other non-JSON scalars are not converted (that is not its job)."""
    assert storable(Decimal("1.2")) == Decimal("1.2")


def test_storable_cleans_inside_lists_tuples_and_dicts() -> None:
    """Cleaning reaches every nested value; tuples become lists."""
    value = {"a": ["\x00", (math.nan, {"b": "\ud800"})], "c": math.inf}
    assert storable(value) == {"a": ["\ufffd", ["nan", {"b": "\ufffd"}]], "c": "inf"}


def test_storable_cleans_and_stringifies_dict_keys() -> None:
    """Keys become strings (as JSON requires) and are cleaned like values."""
    result = storable({1: "a", None: "b", "k\x00": "c", "\udc80": "d", 2.5: "e"})
    assert result == {"1": "a", "None": "b", "k\ufffd": "c", "\ufffd": "d", "2.5": "e"}


def test_storable_output_is_strict_json_in_utf8() -> None:
    """The result serialises without NaN tokens and encodes as UTF-8 (no surrogates)."""
    value = {"\ud800": ["\x00", math.nan, -math.inf, {"x": "\udfff"}]}
    text = json.dumps(storable(value), allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    assert "\\u0000" not in json.dumps(storable(value))


def test_storable_does_not_mutate_its_input() -> None:
    """The payload is copied, not cleaned in place."""
    value = {"a": ["\x00", math.nan]}
    storable(value)
    assert value["a"][0] == "\x00" and math.isnan(value["a"][1])


def nest(levels: int, leaf: Any = "leaf") -> Any:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def depth_and_leaf(value: Any) -> tuple[int, Any]:
    levels = 0
    while isinstance(value, (list, dict)):
        value = value[0] if isinstance(value, list) else next(iter(value.values()))
        levels += 1
    return levels, value


def test_storable_keeps_65_levels_of_nesting() -> None:
    """Containers down to depth 64 (65 levels) are kept whole."""
    assert storable(nest(65)) == nest(65)


def test_storable_cuts_the_66th_level() -> None:
    """The container at depth 65 is replaced by a marker string."""
    assert depth_and_leaf(storable(nest(66))) == (65, "[nested too deep]")


def test_storable_caps_dict_nesting_too() -> None:
    """Nested objects are capped the same way as lists."""
    value: Any = "leaf"
    for _ in range(100):
        value = {"k": value}
    assert depth_and_leaf(storable(value)) == (65, "[nested too deep]")


def test_storable_survives_absurd_nesting() -> None:
    """A payload nested far beyond the recursion limit is cut, not a RecursionError."""
    assert depth_and_leaf(storable(nest(10_000))) == (65, "[nested too deep]")
