"""A Salesforce Pub/Sub API (eventbus.v1.PubSub) server over the simulated event bus.

Real gRPC (grpc.aio) with the stubs generated from our proto, so the source connector is tested
against the same wire protocol it meets in production: call metadata ``accesstoken`` /
``instanceurl`` / ``tenantid``; pull-based Subscribe where the server sends no more events than
the client has asked for (``num_requested`` ≤ 100 per FetchRequest) and, when idle, an empty
FetchResponse carrying ``latest_replay_id`` every keep-alive interval (Salesforce: within 270 s);
errors as gRPC statuses with Salesforce's ``error-code`` trailer (plus ``rpc-id``).

Error codes: ``service.auth.error``, ``service.unavailable``, ``subscription.limit.exceeded``,
``concurrent.client.limit.exceeded``, ``subscription.fetch.replayid.corrupted`` /
``.validation.failed`` and ``subscription.fetch.requested.events.invalid`` are Salesforce's
documented codes (prefix ``sfdc.platform.eventbus.grpc.``). The not-found codes for topics and
schemas are this simulator's best guess; clients should branch on the gRPC status for those.

Fault injection: every RPC and every FetchRequest asks ``Faults.decide``; ``down``/``503``/
``lock`` → UNAVAILABLE, ``429`` → RESOURCE_EXHAUSTED (concurrent clients), ``limit`` →
RESOURCE_EXHAUSTED (delivery limit). A downtime window also ends open subscriptions.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, NoReturn, Union

import grpc

from connectors.salesforce.proto import pubsub_api_pb2 as pb
from connectors.salesforce.proto import pubsub_api_pb2_grpc as pb_grpc
from sandbox.faults import Fault, Faults

from .eventbus import EventBus, InvalidReplayId, StoredEvent, encode_replay_id

__all__ = [
    "DEFAULT_KEEPALIVE_SECONDS",
    "MAX_NUM_REQUESTED",
    "ERROR_AUTH",
    "ERROR_UNAVAILABLE",
    "ERROR_DELIVERY_LIMIT",
    "ERROR_CONCURRENT_LIMIT",
    "ERROR_REPLAY_CORRUPTED",
    "ERROR_REPLAY_VALIDATION",
    "ERROR_NUM_REQUESTED",
    "ERROR_TOPIC_NOT_FOUND",
    "ERROR_SCHEMA_NOT_FOUND",
    "Authenticator",
    "PubSubService",
    "start_pubsub_server",
]

DEFAULT_KEEPALIVE_SECONDS = 270.0
MAX_NUM_REQUESTED = 100

_PREFIX = "sfdc.platform.eventbus.grpc."
ERROR_AUTH = _PREFIX + "service.auth.error"
ERROR_UNAVAILABLE = _PREFIX + "service.unavailable"
ERROR_DELIVERY_LIMIT = _PREFIX + "subscription.limit.exceeded"
ERROR_CONCURRENT_LIMIT = _PREFIX + "concurrent.client.limit.exceeded"
ERROR_REPLAY_CORRUPTED = _PREFIX + "subscription.fetch.replayid.corrupted"
ERROR_REPLAY_VALIDATION = _PREFIX + "subscription.fetch.replayid.validation.failed"
ERROR_NUM_REQUESTED = _PREFIX + "subscription.fetch.requested.events.invalid"
ERROR_TOPIC_NOT_FOUND = _PREFIX + "topic.notfound"
ERROR_SCHEMA_NOT_FOUND = _PREFIX + "schema.notfound"

#: ``authenticate(access_token) -> bool`` (or an awaitable of bool)
Authenticator = Callable[[str], Union[bool, Awaitable[bool]]]

_FAULT_STATUS: dict[str, tuple[grpc.StatusCode, str, str]] = {
    "down": (grpc.StatusCode.UNAVAILABLE, ERROR_UNAVAILABLE, "The Pub/Sub API service is unavailable."),
    "503": (grpc.StatusCode.UNAVAILABLE, ERROR_UNAVAILABLE, "The Pub/Sub API service is unavailable."),
    "lock": (grpc.StatusCode.UNAVAILABLE, ERROR_UNAVAILABLE, "The Pub/Sub API service is unavailable."),
    "429": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        ERROR_CONCURRENT_LIMIT,
        "The maximum number of concurrent clients has been exceeded.",
    ),
    "limit": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        ERROR_DELIVERY_LIMIT,
        "You have exceeded the event delivery limit for your org.",
    ),
}
_PRESETS = {pb.LATEST: "LATEST", pb.EARLIEST: "EARLIEST", pb.CUSTOM: "CUSTOM"}
_METHOD = "/eventbus.v1.PubSub/"


@dataclass(frozen=True)
class _Failure:
    """An error to end a call with: gRPC status, Salesforce error code, message."""

    code: grpc.StatusCode
    error_code: str | None
    message: str


@dataclass
class _Subscription:
    topic: str
    entities: frozenset[str]
    position: int  # sequence number of the last event delivered or skipped
    credit: int  # events requested and not yet delivered
    failure: _Failure | None = None
    client_done: bool = False


class PubSubService(pb_grpc.PubSubServicer):
    """eventbus.v1.PubSub over an :class:`EventBus`."""

    def __init__(
        self,
        bus: EventBus,
        authenticate: Authenticator,
        faults: Faults | None = None,
        *,
        keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS,
        tenant_id: str | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        self.bus = bus
        self.authenticate = authenticate
        self.faults = faults or Faults()
        self.keepalive_seconds = keepalive_seconds
        self.tenant_id = tenant_id
        self._poll = poll_seconds  # how often an idle stream notices a downtime window
        self.active_subscriptions = 0

    # ------------------------------------------------------------------ shared checks

    @staticmethod
    async def _abort(
        context: grpc.aio.ServicerContext, code: grpc.StatusCode, error_code: str | None, message: str, rpc_id: str
    ) -> NoReturn:
        trailers: list[tuple[str, str]] = [("rpc-id", rpc_id)]
        if error_code:
            trailers.insert(0, ("error-code", error_code))
        await context.abort(code, f"{message} rpcId: {rpc_id}", trailing_metadata=tuple(trailers))
        raise AssertionError("unreachable")  # context.abort raises

    async def _fault_failure(self, method: str) -> _Failure | None:
        fault: Fault | None = await self.faults.decide(_METHOD + method)
        if fault is None:
            return None
        code, error_code, message = _FAULT_STATUS.get(fault.kind, _FAULT_STATUS["503"])
        return _Failure(code, error_code, message)

    async def _auth_failure(self, context: grpc.aio.ServicerContext) -> _Failure | None:
        metadata = {key.lower(): value for key, value in (context.invocation_metadata() or ())}
        token = metadata.get("accesstoken", "")
        tenant = metadata.get("tenantid", "")
        ok = bool(token)
        if ok:
            verdict: Any = self.authenticate(token)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            ok = bool(verdict)
        if ok and self.tenant_id is not None and tenant != self.tenant_id:
            ok = False
        if ok:
            return None
        return _Failure(
            grpc.StatusCode.UNAUTHENTICATED,
            ERROR_AUTH,
            "An authentication exception occurred. Provide valid authentication via metadata headers.",
        )

    async def _guard(self, context: grpc.aio.ServicerContext, method: str, rpc_id: str) -> None:
        failure = await self._fault_failure(method) or await self._auth_failure(context)
        if failure:
            await self._abort(context, failure.code, failure.error_code, failure.message, rpc_id)

    def _tenant(self, context: grpc.aio.ServicerContext) -> str:
        if self.tenant_id is not None:
            return self.tenant_id
        metadata = {key.lower(): value for key, value in (context.invocation_metadata() or ())}
        return str(metadata.get("tenantid", ""))

    # ------------------------------------------------------------------ unary RPCs

    async def GetTopic(self, request: pb.TopicRequest, context: grpc.aio.ServicerContext) -> pb.TopicInfo:
        rpc_id = str(uuid.uuid4())
        await self._guard(context, "GetTopic", rpc_id)
        sid = self.bus.topic_schema_id(request.topic_name)
        if sid is None:
            await self._abort(
                context, grpc.StatusCode.NOT_FOUND, ERROR_TOPIC_NOT_FOUND,
                f"Topic {request.topic_name!r} does not exist or you are not allowed to access it.", rpc_id,
            )
        return pb.TopicInfo(
            topic_name=request.topic_name,
            tenant_guid=self._tenant(context),
            can_publish=False,  # change event channels are read-only
            can_subscribe=True,
            schema_id=sid,
            rpc_id=rpc_id,
        )

    async def GetSchema(self, request: pb.SchemaRequest, context: grpc.aio.ServicerContext) -> pb.SchemaInfo:
        rpc_id = str(uuid.uuid4())
        await self._guard(context, "GetSchema", rpc_id)
        text = self.bus.schema_json_by_id(request.schema_id)
        if text is None:
            await self._abort(
                context, grpc.StatusCode.NOT_FOUND, ERROR_SCHEMA_NOT_FOUND,
                f"Schema {request.schema_id!r} not found.", rpc_id,
            )
        return pb.SchemaInfo(schema_json=text, schema_id=request.schema_id, rpc_id=rpc_id)

    async def Publish(self, request: pb.PublishRequest, context: grpc.aio.ServicerContext) -> pb.PublishResponse:
        """Change events are published by the org, never by clients: refuse like Salesforce."""
        rpc_id = str(uuid.uuid4())
        await self._guard(context, "Publish", rpc_id)
        if self.bus.topic_entities(request.topic_name) is None:
            await self._abort(
                context, grpc.StatusCode.NOT_FOUND, ERROR_TOPIC_NOT_FOUND,
                f"Topic {request.topic_name!r} does not exist or you are not allowed to access it.", rpc_id,
            )
        await self._abort(
            context, grpc.StatusCode.PERMISSION_DENIED, None,
            f"Publishing to {request.topic_name!r} is not allowed.", rpc_id,
        )

    async def PublishStream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "PublishStream is not simulated.")

    async def ManagedSubscribe(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "ManagedSubscribe is not simulated.")

    # ------------------------------------------------------------------ Subscribe

    async def Subscribe(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        rpc_id = str(uuid.uuid4())
        await self._guard(context, "Subscribe", rpc_id)
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        sub = await self._open(first, context, rpc_id)
        wake = asyncio.Event()
        reader = asyncio.create_task(self._read_requests(context, sub, wake))
        self.active_subscriptions += 1
        try:
            await self._serve(sub, context, rpc_id, wake)
        finally:
            self.active_subscriptions -= 1
            reader.cancel()

    async def _open(self, first: pb.FetchRequest, context: grpc.aio.ServicerContext, rpc_id: str) -> _Subscription:
        entities = self.bus.topic_entities(first.topic_name)
        if entities is None:
            await self._abort(
                context, grpc.StatusCode.NOT_FOUND, ERROR_TOPIC_NOT_FOUND,
                f"Topic {first.topic_name!r} does not exist or you are not allowed to access it.", rpc_id,
            )
        failure = self._check_num_requested(first.num_requested)
        if failure:
            await self._abort(context, failure.code, failure.error_code, failure.message, rpc_id)
        preset = _PRESETS.get(first.replay_preset)
        if preset is None:
            await self._abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, ERROR_REPLAY_VALIDATION,
                f"Unknown replay_preset {first.replay_preset}.", rpc_id,
            )
        if preset == "CUSTOM" and not first.replay_id:
            await self._abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, ERROR_REPLAY_VALIDATION,
                "The replay_preset field in FetchRequest is set to ReplayPreset.CUSTOM, but no Replay ID value is set.",
                rpc_id,
            )
        if preset == "CUSTOM" and len(first.replay_id) != 8:
            await self._abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, ERROR_REPLAY_VALIDATION,
                "The Replay ID validation failed.", rpc_id,
            )
        try:
            position = self.bus.start_position(preset, first.replay_id)
        except InvalidReplayId:
            await self._abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, ERROR_REPLAY_CORRUPTED,
                "The Replay ID validation failed: it is not valid or is outside the retention window.", rpc_id,
            )
        return _Subscription(first.topic_name, entities, position, first.num_requested)

    @staticmethod
    def _check_num_requested(n: int) -> _Failure | None:
        if 0 <= n <= MAX_NUM_REQUESTED:
            return None
        return _Failure(
            grpc.StatusCode.INVALID_ARGUMENT,
            ERROR_NUM_REQUESTED,
            f"num_requested must be between 1 and {MAX_NUM_REQUESTED}, got {n}.",
        )

    async def _read_requests(self, context: grpc.aio.ServicerContext, sub: _Subscription, wake: asyncio.Event) -> None:
        """Flow control: every later FetchRequest adds its num_requested to the credit."""
        try:
            while sub.failure is None:
                request = await context.read()
                if request is grpc.aio.EOF:
                    sub.client_done = True
                    return
                if request.topic_name and request.topic_name != sub.topic:
                    sub.failure = _Failure(
                        grpc.StatusCode.INVALID_ARGUMENT, None,
                        f"topic_name {request.topic_name!r} differs from the subscription's {sub.topic!r}.",
                    )
                    return
                sub.failure = (
                    self._check_num_requested(request.num_requested)
                    or await self._fault_failure("Subscribe")
                    or await self._auth_failure(context)
                )
                if sub.failure is None:
                    sub.credit += request.num_requested
                wake.set()
        except (asyncio.CancelledError, Exception):  # the call is over: the serving loop reports why
            return
        finally:
            wake.set()

    async def _serve(self, sub: _Subscription, context: grpc.aio.ServicerContext, rpc_id: str,
                     wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        with self.bus.watch(wake):
            while True:
                wake.clear()
                if sub.failure is not None:
                    await self._abort(context, sub.failure.code, sub.failure.error_code, sub.failure.message, rpc_id)
                if self.faults.is_down:
                    self.faults.injected["down"] += 1
                    code, error_code, message = _FAULT_STATUS["down"]
                    await self._abort(context, code, error_code, message, rpc_id)
                if sub.credit > 0:
                    try:
                        events, sub.position = self.bus.read(
                            sub.entities, sub.position, min(sub.credit, MAX_NUM_REQUESTED)
                        )
                    except InvalidReplayId:
                        await self._abort(
                            context, grpc.StatusCode.INVALID_ARGUMENT, ERROR_REPLAY_CORRUPTED,
                            "The subscription fell outside the retention window.", rpc_id,
                        )
                    if events:
                        sub.credit -= len(events)
                        await context.write(self._response(events, sub, rpc_id))
                        last_sent = loop.time()
                        continue
                elif sub.client_done:
                    return  # nothing requested and nothing more can be: end the call
                idle = loop.time() - last_sent
                if idle >= self.keepalive_seconds:
                    sub.position = self.bus.caught_up_position(sub.entities, sub.position)
                    await context.write(
                        pb.FetchResponse(
                            latest_replay_id=encode_replay_id(sub.position),
                            rpc_id=rpc_id,
                            pending_num_requested=sub.credit,
                        )
                    )
                    last_sent = loop.time()
                    continue
                try:
                    await asyncio.wait_for(wake.wait(), min(self.keepalive_seconds - idle, self._poll))
                except asyncio.TimeoutError:
                    pass

    @staticmethod
    def _response(events: list[StoredEvent], sub: _Subscription, rpc_id: str) -> pb.FetchResponse:
        return pb.FetchResponse(
            events=[
                pb.ConsumerEvent(
                    event=pb.ProducerEvent(id=e.event_id, schema_id=e.schema_id, payload=e.payload),
                    replay_id=e.replay_id,
                )
                for e in events
            ],
            latest_replay_id=events[-1].replay_id,
            rpc_id=rpc_id,
            pending_num_requested=sub.credit,
        )


async def start_pubsub_server(
    host: str,
    port: int,
    bus: EventBus,
    authenticate: Authenticator,
    faults: Faults | None = None,
    *,
    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS,
    tenant_id: str | None = None,
) -> tuple[grpc.aio.Server, str]:
    """Start the Pub/Sub API on ``host:port`` (0: any free port), plaintext HTTP/2.

    Returns the started server (stop it with ``await server.stop(grace)``) and the bound
    ``"host:port"``. ``tenant_id``, when given, must match the ``tenantid`` metadata."""
    server = grpc.aio.server()
    service = PubSubService(bus, authenticate, faults, keepalive_seconds=keepalive_seconds, tenant_id=tenant_id)
    pb_grpc.add_PubSubServicer_to_server(service, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:  # grpc's way of saying the port is taken
        raise OSError(errno.EADDRINUSE, f"could not bind the Pub/Sub API server to {host}:{port} ({exc})") from None
    if bound == 0:
        raise OSError(f"could not bind the Pub/Sub API server to {host}:{port}")
    await server.start()
    return server, f"{host}:{bound}"
