"""The API boundary turns the API server's refusals into WriteFailures that quote it."""

from __future__ import annotations

import json

import pytest
from kinfer_operator._kube import _failure
from kinfer_operator.metrics import API_WRITE_FAILURES
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ReadTimeoutError


def _api_error(status: int, reason: str, message: str) -> ApiException:
    err = ApiException(status=status, reason="Unprocessable Entity")
    err.body = json.dumps({"kind": "Status", "reason": reason, "message": message}).encode()
    return err


def test_a_422_is_a_refusal_quoting_the_api_server() -> None:
    message = 'Deployment.apps "m-1" is invalid: spec.template.spec.affinity: Required value'
    failure = _failure(_api_error(422, "Invalid", message), "apply", "Deployment", "m-1")
    assert (failure.code, failure.reason, failure.message) == (422, "Invalid", message)
    assert failure.permanent
    assert "spec.template.spec.affinity" in failure.describe()


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (400, True),
        (403, True),
        (404, True),
        (422, True),
        (408, False),
        (409, False),
        (429, False),
        (500, False),
        (503, False),
    ],
)
def test_only_client_errors_that_cannot_pass_are_permanent(status: int, permanent: bool) -> None:
    failure = _failure(_api_error(status, "X", "m"), "apply", "Service", "m")
    assert failure.permanent is permanent


def test_no_answer_is_a_retry() -> None:
    err = ReadTimeoutError(None, "/apis", "read timed out")  # type: ignore[arg-type]
    failure = _failure(err, "scale", "Deployment", "m-1")
    assert failure.code is None and not failure.permanent
    assert failure.reason == "ReadTimeoutError" and "retrying scale" in failure.describe()


def test_every_failure_is_counted_by_verb_kind_and_code() -> None:
    counter = API_WRITE_FAILURES.labels(verb="delete", kind="HorizontalPodAutoscaler", code="403")
    before = counter._value.get()
    _failure(_api_error(403, "Forbidden", "no"), "delete", "HorizontalPodAutoscaler", "m")
    assert counter._value.get() == before + 1
