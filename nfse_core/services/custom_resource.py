"""CloudFormation custom resources: run the work, and always answer the stack.

CloudFormation sends a custom resource's function a Create, Update or Delete request and then
waits for the answer to be PUT to the request's ResponseURL (a presigned S3 URL). An answer
that never comes (an exception, the function's timeout) leaves the stack waiting for an hour
before it fails the resource. So `run_custom_resource` answers in every case: SUCCESS, or
FAILED with the reason, and FAILED as well when the work is still running close to the
function's timeout (the work runs in a thread; the handler's thread keeps `margin_seconds` to
send the answer).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

Status = Literal["SUCCESS", "FAILED"]
REQUEST_TYPES = frozenset({"Create", "Update", "Delete"})
# Time kept before the function's timeout to send the answer: PUT_ATTEMPTS tries of
# PUT_TIMEOUT_SECONDS with a second between them fit in it.
RESPONSE_MARGIN_SECONDS = 15.0
PUT_ATTEMPTS = 3
PUT_TIMEOUT_SECONDS = 4.0
# CloudFormation refuses a response body over 4096 bytes; the reason is what gets cut.
MAX_RESPONSE_BYTES = 4096


class MalformedRequest(ValueError):
    """The event is not a custom resource request that can be answered (no ResponseURL)."""


class DeadlineExceeded(TimeoutError):
    """Waiting longer would leave no time to answer the stack."""


class ResponseNotSent(RuntimeError):
    """Every PUT to the ResponseURL failed; the stack still waits."""


@dataclass(frozen=True, slots=True)
class CustomResourceRequest:
    """The fields of CloudFormation's request that the answer echoes, and the properties."""

    request_type: str
    response_url: str
    stack_id: str
    request_id: str
    logical_resource_id: str
    physical_resource_id: str = ""  # Update and Delete only
    properties: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, event: Any) -> CustomResourceRequest:
        """The request, or MalformedRequest when there is nowhere to answer."""
        if not isinstance(event, Mapping) or not isinstance(event.get("ResponseURL"), str):
            raise MalformedRequest("not a CloudFormation custom resource request: no ResponseURL")
        properties = event.get("ResourceProperties")
        return cls(
            request_type=str(event.get("RequestType", "")),
            response_url=event["ResponseURL"],
            stack_id=str(event.get("StackId", "")),
            request_id=str(event.get("RequestId", "")),
            logical_resource_id=str(event.get("LogicalResourceId", "")),
            physical_resource_id=str(event.get("PhysicalResourceId", "")),
            properties=properties if isinstance(properties, Mapping) else {},
        )


@dataclass(frozen=True, slots=True)
class Done:
    """What the work returns: a line for the stack's events, and values for Fn::GetAtt."""

    reason: str
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer sent to the stack."""

    status: Status
    reason: str
    physical_resource_id: str
    data: Mapping[str, str] = field(default_factory=dict)


class Deadline:
    """The time the work may take: the function's remaining time less the answer's margin."""

    def __init__(self, remaining_ms: Callable[[], int], margin_seconds: float) -> None:
        self._remaining_ms = remaining_ms
        self.margin_seconds = margin_seconds

    def remaining(self) -> float:
        """Seconds left for the work (negative once past)."""
        return self._remaining_ms() / 1000 - self.margin_seconds

    def sleep(self, seconds: float) -> None:
        """Sleep, or raise DeadlineExceeded when that would leave no time to answer: a retry
        loop given this as its sleep stops in time."""
        left = self.remaining()
        if seconds >= left:
            raise DeadlineExceeded(
                f"out of time: a wait of {seconds:.1f} s with {max(left, 0):.1f} s left"
            )
        time.sleep(seconds)


Work = Callable[[CustomResourceRequest, Deadline], Done]


def response_body(request: CustomResourceRequest, outcome: Outcome) -> bytes:
    """The JSON CloudFormation reads, within its size limit (the reason is shortened)."""

    def encode(reason: str) -> bytes:
        body = {
            "Status": outcome.status,
            "Reason": reason,
            "PhysicalResourceId": outcome.physical_resource_id,
            "StackId": request.stack_id,
            "RequestId": request.request_id,
            "LogicalResourceId": request.logical_resource_id,
            "Data": dict(outcome.data),
        }
        return json.dumps(body).encode()

    encoded = encode(outcome.reason)
    if len(encoded) <= MAX_RESPONSE_BYTES:
        return encoded
    # The longest start of the reason that fits, by each character's size in the JSON (an
    # escape is 2 to 6 bytes), then "...".
    budget = MAX_RESPONSE_BYTES - len(encode("..."))
    used = end = 0
    for char in outcome.reason:
        used += len(json.dumps(char)) - 2
        if used > budget:
            break
        end += 1
    return encode(outcome.reason[:end] + "...")


def send_response(url: str, body: bytes, *, timeout: float = PUT_TIMEOUT_SECONDS) -> int:
    """PUT the answer; the HTTP status. The Content-Type is empty: the presigned URL was signed
    without one, so S3 refuses a request that names any."""
    request = urllib.request.Request(  # noqa: S310 (CloudFormation's https URL, or a test's)
        url,
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
        return int(answer.status)


def answer(
    request: CustomResourceRequest,
    outcome: Outcome,
    send: Callable[[str, bytes], int] = send_response,
    pause: Callable[[float], None] = time.sleep,
) -> None:
    """Send `outcome`, trying PUT_ATTEMPTS times; ResponseNotSent when no try got through."""
    body = response_body(request, outcome)
    problem = ""
    for attempt in range(1, PUT_ATTEMPTS + 1):
        try:
            status = send(request.response_url, body)
        except (urllib.error.URLError, OSError) as error:
            problem = f"{type(error).__name__}: {error}"
        else:
            if 200 <= status < 300:
                log.info("answered the stack: %s (%s)", outcome.status, outcome.reason)
                return
            problem = f"HTTP {status}"
        log.warning("answer %s not sent (attempt %d): %s", outcome.status, attempt, problem)
        if attempt < PUT_ATTEMPTS:
            pause(1.0)
    raise ResponseNotSent(f"the answer to {request.logical_resource_id} was not sent: {problem}")


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def outcome_of(
    request: CustomResourceRequest,
    work: Work,
    deadline: Deadline,
    physical_resource_id: str,
) -> Outcome:
    """Run `work` for a Create or Update (in a thread, watched against `deadline`); a Delete
    does nothing. Never raises: every failure is a FAILED outcome with its reason."""
    # Update keeps the id CloudFormation has: a new one would make it delete the old resource.
    physical = request.physical_resource_id or physical_resource_id
    if request.request_type == "Delete":
        return Outcome("SUCCESS", "nothing to delete", physical)
    if request.request_type not in REQUEST_TYPES:
        return Outcome("FAILED", f"unknown RequestType {request.request_type!r}", physical)

    result: list[Done] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work(request, deadline))
        except BaseException as error:  # every failure must reach the stack, as FAILED
            log.exception("%s of %s failed", request.request_type, request.logical_resource_id)
            failure.append(error)

    worker = threading.Thread(target=run, name="custom-resource-work", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=max(deadline.remaining(), 0.0))
    if worker.is_alive():
        elapsed = time.monotonic() - started
        log.error("%s still running after %.0f s: answering FAILED", request.request_type, elapsed)
        return Outcome(
            "FAILED",
            f"{request.request_type} still running after {elapsed:.0f} s, close to the"
            f" function's timeout ({deadline.margin_seconds:.0f} s kept to answer); it is safe"
            " to run again",
            physical,
        )
    if failure:
        return Outcome("FAILED", _describe(failure[0]), physical)
    return Outcome("SUCCESS", result[0].reason, physical, result[0].data)


def run_custom_resource(  # noqa: PLR0913 - the request, its deadline and work; keyword-only settings
    event: Any,
    remaining_ms: Callable[[], int],
    work: Work,
    *,
    physical_resource_id: str,
    margin_seconds: float = RESPONSE_MARGIN_SECONDS,
    send: Callable[[str, bytes], int] = send_response,
) -> Outcome:
    """Answer one CloudFormation request (see the module docstring); the outcome sent.

    `remaining_ms` is the Lambda context's get_remaining_time_in_millis. `physical_resource_id`
    names the resource on Create (keep it stable). Raises MalformedRequest when the event has
    no ResponseURL, and ResponseNotSent when the answer could not be delivered: both fail the
    invocation, so they are logged and retried by Lambda's asynchronous invocation.
    """
    request = CustomResourceRequest.parse(event)
    log.info(
        "%s %s (request %s)", request.request_type, request.logical_resource_id, request.request_id
    )
    outcome = outcome_of(
        request, work, Deadline(remaining_ms, margin_seconds), physical_resource_id
    )
    answer(request, outcome, send)
    return outcome
