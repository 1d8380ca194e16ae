"""gRPC failures of the Pub/Sub API become the connector's typed errors, by error-code first."""

from __future__ import annotations

import grpc
import pytest

from connectors.errors import AuthExpiredError, FatalError, RetryableError
from connectors.salesforce.pubsub import ReplayIdExpired, translate_rpc_error

PREFIX = "sfdc.platform.eventbus.grpc."


def rpc_error(code: grpc.StatusCode, error_code: str | None = None) -> grpc.aio.AioRpcError:
    trailers = grpc.aio.Metadata(("error-code", error_code)) if error_code else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details="details")


@pytest.mark.parametrize(
    ("code", "error_code", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, PREFIX + "subscription.fetch.replayid.corrupted", ReplayIdExpired),
        (grpc.StatusCode.INVALID_ARGUMENT, PREFIX + "subscription.fetch.replayid.validation.failed", ReplayIdExpired),
        (grpc.StatusCode.UNAUTHENTICATED, PREFIX + "service.auth.error", AuthExpiredError),
        (grpc.StatusCode.UNAUTHENTICATED, None, AuthExpiredError),
        (grpc.StatusCode.UNAVAILABLE, PREFIX + "service.unavailable", RetryableError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, PREFIX + "concurrent.client.limit.exceeded", RetryableError),
        (grpc.StatusCode.INVALID_ARGUMENT, PREFIX + "subscription.fetch.requested.events.invalid", FatalError),
        (grpc.StatusCode.PERMISSION_DENIED, None, FatalError),
    ],
)
def test_translation(code: grpc.StatusCode, error_code: str | None, expected: type) -> None:
    error = translate_rpc_error(rpc_error(code, error_code), "Subscribe /data/ContactChangeEvent")
    assert type(error) is expected
    assert error.code == (error_code or code.name)
    assert "Subscribe /data/ContactChangeEvent" in str(error)


def test_not_found_is_fatal_and_marked() -> None:
    error = translate_rpc_error(rpc_error(grpc.StatusCode.NOT_FOUND, PREFIX + "schema.notfound"), "GetSchema x")
    assert isinstance(error, FatalError) and error.status == 404
