"""Reading fill Jobs: progress lines become the status message, failures their reason."""

from __future__ import annotations

from kinfer_operator.world import Observed
from kinfer_operator.world.fills import fill_state, progress_message


def test_progress_message_uses_the_last_progress_line() -> None:
    tail = (
        "kinfer-progress done=0 total=1073741824\n"
        "WARNING retrying\n"
        "kinfer-progress done=431882240 total=1073741824\n"
    )
    assert progress_message(tail) == "Downloading model 412/1024 MiB"
    assert progress_message("kinfer-progress done=2097152 total=4924825") == (
        "Downloading model 2.0/4.7 MiB"
    )
    assert progress_message("kinfer-progress done=10485760 total=?") == (
        "Downloading model 10/? MiB"
    )
    assert progress_message(None) == "Downloading model"


def test_failed_job_quotes_the_fill_pods_termination_message() -> None:
    job = {
        "metadata": {"name": "m-cache-1"},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimit"}]},
    }
    pod = {
        "metadata": {"name": "m-cache-1-abc", "labels": {"job-name": "m-cache-1"}},
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": 1, "message": "cannot cache x: HTTP 403"}}}
            ]
        },
    }
    state = fill_state(Observed(jobs=(job,), pods=(pod,)), "m-cache-1")
    assert state is not None and state.phase == "Failed"
    assert state.message == "cache-fill Job m-cache-1 failed: cannot cache x: HTTP 403"
    assert fill_state(Observed(), "m-cache-1") is None


def test_a_fill_pod_the_kubelet_cannot_create_blocks_the_fill_with_its_message() -> None:
    job = {"metadata": {"name": "m-cache-1"}, "status": {"active": 1}}
    waiting = {"reason": "CreateContainerConfigError", "message": 'secret "hub" not found'}
    pod = {
        "metadata": {"name": "m-cache-1-abc", "labels": {"job-name": "m-cache-1"}},
        "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": waiting}}]},
    }
    state = fill_state(Observed(jobs=(job,), pods=(pod,)), "m-cache-1")
    assert state is not None and (state.phase, state.message) == (
        "Blocked",
        'secret "hub" not found',
    )
    started = {**pod, "status": {"phase": "Running", "containerStatuses": [{"state": {}}]}}
    state = fill_state(Observed(jobs=(job,), pods=(started,)), "m-cache-1")
    assert state is not None and state.phase == "Filling"
