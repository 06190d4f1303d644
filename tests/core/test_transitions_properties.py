"""Property tests (hypothesis): any sequence of payloads leaves the task in the furthest
state seen, final states never change, and each signal fires at most once."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_evolink import signals
from django_evolink.core.transitions import apply_payload
from django_evolink.models import STATUS_RANK, EventSource, ImageTask, Status

EVO_ID = "task-unified-prop"
RESULTS = ["https://files.evolink.ai/r/0.png", "https://files.evolink.ai/r/1.png"]

valid_payload = st.builds(
    lambda status, progress: {
        "id": EVO_ID,
        "status": status,
        "progress": progress,
        "results": RESULTS if status == "completed" else None,
        "usage": {"billing_rule": "per_call", "credits_reserved": 1.2, "user_group": "default"},
    },
    st.sampled_from(["pending", "processing", "completed", "failed", "cancelled"]),
    st.integers(0, 100),
)
noise = st.one_of(
    st.none(),
    st.builds(lambda s: {"id": EVO_ID, "status": s, "progress": 5}, st.text(max_size=8)),
    st.builds(
        lambda p: {
            "id": "task-unified-other",
            "status": "completed",
            "progress": p,
            "results": RESULTS,
        },
        st.integers(0, 100),
    ),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
sources = st.sampled_from([EventSource.POLL, EventSource.CALLBACK, EventSource.REFRESH])


def _clean(body):
    if isinstance(body, dict) and body.get("results") is None:
        body = {k: v for k, v in body.items() if k != "results"}
    return body


@pytest.mark.django_db
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(st.one_of(valid_payload, valid_payload, valid_payload, noise), sources),
        min_size=1,
        max_size=12,
    )
)
def test_any_sequence_ends_in_the_furthest_state(django_capture_on_commit_callbacks, sequence):
    # examples share one database transaction: give each its own Evolink id
    ImageTask.objects.filter(evolink_id=EVO_ID).delete()
    task = ImageTask.objects.create(
        model="wan2.5-image-to-image", prompt="p", image_urls=["https://e.com/a.png"], n=2
    )
    apply_payload(
        task, {"id": EVO_ID, "status": "pending", "progress": 0}, source=EventSource.SUBMIT
    )
    fired = []

    def on_change(sender, task, old_status, new_status, **kw):
        fired.append(("changed", old_status, new_status))

    def on_done(sender, task, **kw):
        fired.append(("final", task.status))

    signals.task_status_changed.connect(on_change, dispatch_uid="prop-change")
    signals.task_completed.connect(on_done, dispatch_uid="prop-done")
    signals.task_failed.connect(on_done, dispatch_uid="prop-fail")
    try:
        first_final = None
        best_rank, best_progress = STATUS_RANK[Status.PENDING], 0
        with django_capture_on_commit_callbacks(execute=True):
            for body, source in sequence:
                body = _clean(body)
                apply_payload(task, body, source=source)
                if (
                    isinstance(body, dict)
                    and body.get("id") == EVO_ID
                    and body.get("status") in STATUS_RANK
                    and body["status"] != "queued"
                    and isinstance(body.get("progress"), int)
                    and first_final is None
                ):
                    rank = STATUS_RANK[body["status"]]
                    if rank >= best_rank:
                        best_progress = max(best_progress, body["progress"])
                    best_rank = max(best_rank, rank)
                    if rank == 3:
                        first_final = body["status"]
        task.refresh_from_db()
        assert STATUS_RANK[task.status] == best_rank
        if first_final:
            assert task.status == first_final
            assert task.completed_at is not None
        if task.status == Status.COMPLETED:
            assert task.progress == 100 and task.images.count() == 2
        else:
            assert task.images.count() == 0
            if not first_final:
                assert task.progress == best_progress
        finals = [f for f in fired if f[0] == "final"]
        assert len(finals) == (1 if first_final else 0)
        changes = [f for f in fired if f[0] == "changed"]
        assert len(changes) == len({c[2] for c in changes})
        assert task.events.count() == len(sequence) + 1
    finally:
        signals.task_status_changed.disconnect(dispatch_uid="prop-change")
        signals.task_completed.disconnect(dispatch_uid="prop-done")
        signals.task_failed.disconnect(dispatch_uid="prop-fail")
