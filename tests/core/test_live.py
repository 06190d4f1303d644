"""Versions, ETags and the change channel of live updates (django_evolink.core.live)."""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import connection

from django_evolink.core import live
from django_evolink.exceptions import EvolinkConfigurationError

REDIS_URL = "redis://127.0.0.1:6379/6"


def test_versions_parse_and_order():
    assert live.parse_version("1764638400123456.2") == (1764638400123456, 2)
    assert live.parse_version("1764638400123456.2") > live.parse_version("1764638400123456.1")
    for bad in (None, "", "abc", "1.x", "-1.0", "1", "1." + "9" * 7, "9" * 21 + ".0"):
        assert live.parse_version(bad) is None


def test_if_none_match_uses_the_weak_comparison():
    assert live.etag_matches('W/"a"', 'W/"a"')
    assert live.etag_matches('"a"', 'W/"a"')
    assert live.etag_matches('"b", W/"a"', 'W/"a"')
    assert live.etag_matches("*", 'W/"a"')
    assert not live.etag_matches('W/"b"', 'W/"a"')
    assert not live.etag_matches(None, 'W/"a"') and not live.etag_matches("", 'W/"a"')


@pytest.mark.django_db
def test_the_channel_follows_the_setting(settings):
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "auto", "EVENTS_REDIS_URL": None}
    assert live.channel_kind() == ("postgres" if connection.vendor == "postgresql" else "poll")
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "poll"}
    assert live.channel_kind() == "poll"
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "carrier-pigeon"}
    with pytest.raises(EvolinkConfigurationError, match="'auto', 'postgres', 'redis', 'poll'"):
        live.channel_kind()
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "redis"}
    with pytest.raises(EvolinkConfigurationError, match="EVENTS_REDIS_URL"):
        live._redis()


def test_redis_pubsub_wakes_a_subscription(settings):
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "redis",
                        "EVENTS_REDIS_URL": REDIS_URL}
    task_id = uuid.uuid4()
    sub = live.subscribe(task_id)
    other = live.subscribe(uuid.uuid4())
    try:
        deadline = time.monotonic() + 5
        while not sub.live and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sub.live  # fails loudly when Redis is down
        assert not sub.wait(0.05)
        started = time.monotonic()
        live.publish(task_id)
        assert sub.wait(3.0) and time.monotonic() - started < 1.5
        assert not other.wait(0.2)  # another task's stream sleeps on
    finally:
        sub.close()
        other.close()
    assert live.hub.wait_idle()  # the listener ends with the last stream
