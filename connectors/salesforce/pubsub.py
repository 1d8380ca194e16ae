"""Salesforce Pub/Sub API client (gRPC, eventbus.v1) on grpc.aio.

Every call carries the metadata Salesforce requires (``accesstoken``, ``instanceurl``,
``tenantid``) from the shared :class:`~connectors.salesforce.auth.TokenProvider`. Schemas are
fetched once per schema id and cached. :class:`Subscription` is one Subscribe stream with flow
control: it never has more than ``batch_size`` (≤ 100) events requested, and asks for more only
as the caller reports events consumed, so a slow Kafka holds the server back instead of
filling memory.

Errors are translated at this boundary (``error-code`` trailer first, then the gRPC status):

    replayid.corrupted / replayid.validation.failed → ReplayIdExpired  (resubscribe LATEST, resync)
    UNAUTHENTICATED, service.auth.error             → AuthExpiredError (refresh, resubscribe)
    UNAVAILABLE, RESOURCE_EXHAUSTED, …; stream end  → RetryableError   (back off, resubscribe)
    GetSchema NOT_FOUND                             → SchemaNotFound   (the event is quarantined)
    anything else                                   → FatalError
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Awaitable, Callable

import grpc

from connectors.errors import AuthExpiredError, ConnectorError, FatalError, RetryableError
from connectors.retry import RetryPolicy, RetryStats
from connectors.salesforce.auth import Token, TokenProvider
from connectors.salesforce.cdc import ChangeSchema
from connectors.salesforce.config import SalesforceConfig
from connectors.salesforce.proto import pubsub_api_pb2 as pb
from connectors.salesforce.proto import pubsub_api_pb2_grpc as pb_grpc

__all__ = [
    "MAX_BATCH",
    "ReplayPreset",
    "ReplayIdExpired",
    "SchemaNotFound",
    "ReceivedEvent",
    "FetchBatch",
    "PubSubClient",
    "Subscription",
    "translate_rpc_error",
]

log = logging.getLogger(__name__)

MAX_BATCH = 100
_REPLAY_ERRORS = ("replayid.corrupted", "replayid.validation.failed")
_RETRYABLE_STATUS = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED,
})
_MAX_MESSAGE = 100 * 1024 * 1024
Metadata = tuple[tuple[str, str], ...]


class ReplayPreset:
    LATEST = pb.LATEST
    EARLIEST = pb.EARLIEST
    CUSTOM = pb.CUSTOM


class ReplayIdExpired(ConnectorError):
    """The replay id we resume from is outside the retention window (or refused as invalid)."""


class SchemaNotFound(FatalError):
    """The server does not know the schema id an event names."""


def translate_rpc_error(exc: grpc.aio.AioRpcError, what: str) -> ConnectorError:
    code = exc.code()
    error_code = dict(exc.trailing_metadata() or ()).get("error-code")
    error_code = error_code.decode() if isinstance(error_code, bytes) else error_code
    message = f"Pub/Sub {what}: {code.name} {error_code or ''} {exc.details() or ''}".strip()
    if error_code and error_code.endswith(_REPLAY_ERRORS):
        return ReplayIdExpired(message, code=error_code)
    if code == grpc.StatusCode.UNAUTHENTICATED or (error_code or "").endswith("auth.error"):
        return AuthExpiredError(message, code=error_code or code.name)
    if code in _RETRYABLE_STATUS:
        return RetryableError(message, code=error_code or code.name)
    return FatalError(message, code=error_code or code.name, status=404 if code == grpc.StatusCode.NOT_FOUND else None)


@dataclass(frozen=True)
class ReceivedEvent:
    replay_id: bytes
    schema_id: str
    payload: bytes
    #: the event's own id (a guid), for support traces
    event_uuid: str


@dataclass(frozen=True)
class FetchBatch:
    """One FetchResponse: events (none for a keep-alive) and the stream's latest replay id."""

    events: list[ReceivedEvent]
    latest_replay_id: bytes
    rpc_id: str

    @property
    def keepalive(self) -> bool:
        return not self.events


class PubSubClient:
    """One channel to the Pub/Sub API for the process; the token comes from the shared provider."""

    def __init__(
        self,
        config: SalesforceConfig,
        tokens: TokenProvider,
        *,
        policy: RetryPolicy | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.policy = policy or RetryPolicy(max_attempts=5)
        self.stats = RetryStats()
        self._channel = channel
        self._stub_instance: pb_grpc.PubSubStub | None = None
        self._schemas: dict[str, ChangeSchema] = {}
        self.schema_fetches = 0

    def _open_channel(self) -> grpc.aio.Channel:
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE)]
        if self.config.pubsub_tls:
            return grpc.aio.secure_channel(self.config.pubsub_endpoint, grpc.ssl_channel_credentials(), options)
        return grpc.aio.insecure_channel(self.config.pubsub_endpoint, options)

    @property
    def _stub(self) -> pb_grpc.PubSubStub:
        """Created on first use: a grpc.aio channel belongs to the running event loop."""
        if self._stub_instance is None:
            self._channel = self._channel or self._open_channel()
            self._stub_instance = pb_grpc.PubSubStub(self._channel)
        return self._stub_instance

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub_instance = None

    @staticmethod
    def metadata(token: Token) -> Metadata:
        return (("accesstoken", token.access_token), ("instanceurl", token.instance_url),
                ("tenantid", token.org_id))

    async def _unary(self, what: str, send: Callable[[Metadata], Awaitable[Any]]) -> Any:
        used: list[Token] = []

        async def attempt() -> Any:
            token = await self.tokens.token()
            used.append(token)
            try:
                return await send(self.metadata(token))
            except grpc.aio.AioRpcError as exc:
                raise translate_rpc_error(exc, what) from exc

        async def refresh() -> None:
            await self.tokens.refresh(used[-1] if used else None)

        return await self.policy.run(attempt, on_auth_expired=refresh, stats=self.stats)

    async def topic(self, topic_name: str) -> pb.TopicInfo:
        return await self._unary(f"GetTopic {topic_name}", lambda md: self._stub.GetTopic(
            pb.TopicRequest(topic_name=topic_name), metadata=md, timeout=self.config.timeout))

    async def schema(self, schema_id: str) -> ChangeSchema:
        """The schema by id, fetched once. Raises SchemaNotFound, or MalformedEvent when the
        server's schema cannot be used."""
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        try:
            info = await self._unary(f"GetSchema {schema_id}", lambda md: self._stub.GetSchema(
                pb.SchemaRequest(schema_id=schema_id), metadata=md, timeout=self.config.timeout))
        except FatalError as exc:
            if exc.status == 404:
                raise SchemaNotFound(f"unknown schema {schema_id}: {exc}", code=exc.code) from exc
            raise
        self.schema_fetches += 1
        schema = ChangeSchema.from_json(schema_id, info.schema_json)
        self._schemas[schema_id] = schema
        return schema

    async def topic_schema(self, topic_name: str) -> ChangeSchema:
        return await self.schema((await self.topic(topic_name)).schema_id)

    def subscribe(self, topic_name: str, preset: int, replay_id: bytes = b"",
                  batch_size: int = MAX_BATCH) -> "Subscription":
        return Subscription(self, topic_name, preset, replay_id, batch_size)

    async def latest_replay_id(self, topic_name: str, timeout: float) -> bytes:
        """Where the channel's stream is now: the first answer of a LATEST subscription (an
        event, or the keep-alive Salesforce sends within 270 s when nothing happens)."""
        async with self.subscribe(topic_name, ReplayPreset.LATEST, batch_size=1) as sub:
            try:
                batch = await asyncio.wait_for(sub.next_batch(), timeout)
            except asyncio.TimeoutError as exc:
                raise RetryableError(f"Pub/Sub {topic_name}: no answer within {timeout:.0f}s") from exc
        return batch.latest_replay_id


class Subscription:
    """One Subscribe stream. Use as an async context manager; read with :meth:`next_batch`,
    then call :meth:`consumed` once the batch's events are safely handled."""

    def __init__(self, client: PubSubClient, topic_name: str, preset: int, replay_id: bytes,
                 batch_size: int) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}, got {batch_size}")
        if preset == ReplayPreset.CUSTOM and not replay_id:
            raise ValueError("a CUSTOM subscription needs a replay id")
        self.client = client
        self.topic_name = topic_name
        self.preset = preset
        self.replay_id = replay_id
        self.batch_size = batch_size
        self.token: Token | None = None
        self.requested = 0  # asked for and not yet received
        self._call: grpc.aio.StreamStreamCall | None = None

    async def __aenter__(self) -> "Subscription":
        self.token = await self.client.tokens.token()
        self._call = self.client._stub.Subscribe(metadata=self.client.metadata(self.token))
        try:
            await self._request(self.batch_size, first=True)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def _request(self, n: int, *, first: bool = False) -> None:
        assert self._call is not None
        request = pb.FetchRequest(topic_name=self.topic_name, num_requested=n)
        if first:
            request.replay_preset = self.preset
            request.replay_id = self.replay_id
        try:
            await self._call.write(request)
        except grpc.aio.AioRpcError as exc:
            raise translate_rpc_error(exc, f"Subscribe {self.topic_name}") from exc
        except asyncio.InvalidStateError:
            return  # the call is over; the next read reports why
        self.requested += n

    async def next_batch(self) -> FetchBatch:
        assert self._call is not None, "use the subscription as an async context manager"
        try:
            response = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise translate_rpc_error(exc, f"Subscribe {self.topic_name}") from exc
        if response is grpc.aio.EOF:
            raise RetryableError(f"Pub/Sub Subscribe {self.topic_name}: the server ended the stream")
        events = [ReceivedEvent(e.replay_id, e.event.schema_id, e.event.payload, e.event.id) for e in response.events]
        self.requested = max(0, self.requested - len(events))
        return FetchBatch(events, response.latest_replay_id, response.rpc_id)

    async def consumed(self) -> None:
        """Ask for more once half of the requested events have come and been handled."""
        if self.requested <= self.batch_size // 2:
            await self._request(self.batch_size - self.requested)
