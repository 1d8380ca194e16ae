"""State rebuild: recompute the flow tables from the source topics (``stream-app rebuild``).

When: after bumping the app version (a new consumer group, new changelog topics and a new local
data directory: a clean slate to fill), or when the state is lost or suspect (``wipe`` deletes
the group's changelog topics, the sink version table's included, and this machine's table
files first).

With every worker of the group stopped (and, for a rebuild that writes nothing, the sources):

1. **Checks.** Refused outright: live members in the group or the previous one; table state in
   the group without ``wipe``. Refused unless ``force``: the previous state had work left (lag
   on its group); DLQ entries wait (their ``version`` belongs to the old state's numbering,
   which the new version guard does not share: replay or purge them first); retention already
   deleted the oldest input events (the rebuilt tables would miss what only those described:
   run ``stream-app backfill`` first).
2. **Seeds the group's offsets.** The inputs (the flow's ``src.*`` topics and ``links.tims``)
   from their beginning; the app's own topics (``customer_sync.*``, ``diag.ping``) at their end
   (the rebuild derives their content again); every ``sink.*`` topic where the previous state's sinks
   stopped (its end once that state had finished).
3. **Runs one worker without sinks** (``CONNECT_SINK_OBJECTS`` empty, its log in a file), with a
   progress bar of the group over the inputs and the flow topics, until its lag there is 0; then
   stops it (it commits, and the tables are in their changelogs).
4. **Skips the restated commands.** Starting from empty tables, the flow derives every command
   again (its memory of what each target holds starts empty). The previous state had sent them
   all, so they would only write the same values once more: the group is moved past them on the
   sink topics. They are kept, and written when the workers start (idempotent upserts: API calls,
   nothing lost), when they may hold something new: input events arrived during the rebuild
   (sources left running), the previous state had not finished (``force``), or ``keep_commands``.
5. Prints the size of each rebuilt table.

Afterwards start the workers (with their sinks) and the sources as usual. Interrupted, the
rebuild leaves partial tables: run it again with ``wipe``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from aiokafka import TopicPartition
from tqdm import tqdm

from connectors import kafka_admin
from connectors.kafka_admin import (
    GroupNotEmptyError, KafkaAdminError, beginning_offsets, end_offsets, list_topics, read_to_end,
)
from stream_app import flows
from stream_app.diagnostics import PING_TOPIC

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = [
    "RebuildError", "RebuildPlan", "rebuild", "group_id", "app_version", "input_topics", "flow_topics",
    "changelog_topics", "commit_offsets", "read_table", "table_sizes",
]

READY_MARK = "[^Worker]: Ready"


class RebuildError(RuntimeError):
    """The rebuild cannot go ahead; the message says what to do."""


def app_version(settings: "Settings") -> int:
    """The Faust app version (``CONNECT_APP_VERSION`` once the setting exists; 1 before)."""
    return int(getattr(settings, "app_version", 1) or 1)


def group_id(settings: "Settings") -> str:
    """The consumer group, as Faust names it: the app id, ``-v<N>`` appended from version 2."""
    version = app_version(settings)
    return settings.app_id if version <= 1 else f"{settings.app_id}-v{version}"


def previous_group_id(settings: "Settings") -> str:
    """The group of the version before this one (the same group at version 1)."""
    version = app_version(settings)
    if version <= 2:
        return settings.app_id
    return f"{settings.app_id}-v{version - 1}"


def table_dir(settings: "Settings") -> Path:
    """This machine's table files for the current version (Faust: ``<datadir>/v<N>/tables``)."""
    return Path(settings.data_dir) / f"v{app_version(settings)}" / "tables"


def input_topics(settings: "Settings") -> list[str]:
    """The topics the tables are rebuilt from: the flows' source topics and the links."""
    return flows.input_topics(settings)


def flow_topics(settings: "Settings") -> list[str]:
    """Topics the app writes for itself and reads back: the rebuild derives their content again
    (the flows' stages) or has no use for it (health-check pings), so they start at their end."""
    return [*flows.internal_topics(settings), settings.topic(PING_TOPIC)]


def changelog_topics(topics: Iterable[str], group: str) -> list[str]:
    """The table changelogs of ``group`` (``<group>-<table>-changelog``), not those of a later
    version of it (``<group>-v2-...``)."""
    pattern = re.compile(rf"^{re.escape(group)}-(?!v\d+-).+-changelog$")
    return sorted(t for t in topics if pattern.match(t))


# -- broker helpers ------------------------------------------------------------------------------

async def commit_offsets(bootstrap: str, group: str, offsets: Mapping[TopicPartition, int]) -> None:
    """Set the group's committed offsets (refused while the group has live members)."""
    try:
        await kafka_admin.commit_offsets(bootstrap, group, offsets)
    except GroupNotEmptyError as exc:
        raise RebuildError(f"{exc}: stop every worker first") from exc


async def _commit(bootstrap: str, plan: "RebuildPlan", offsets: Mapping[TopicPartition, int]) -> None:
    """Set committed offsets in the group(s) of the plan's app that read each topic: Faust's, or a
    direct stage's (docs/adr/0028)."""
    try:
        await plan.groups.commit(bootstrap, offsets)
    except GroupNotEmptyError as exc:
        raise RebuildError(f"{exc}: stop every worker first") from exc


async def read_table(bootstrap: str, changelog: str) -> dict[bytes, bytes]:
    """A table as its changelog holds it: key → latest value (deleted keys left out)."""
    table: dict[bytes, bytes] = {}
    async for record in read_to_end(bootstrap, [changelog]):
        if record.value is None:
            table.pop(record.key, None)
        else:
            table[record.key] = record.value
    return table


async def table_sizes(bootstrap: str, changelogs: Iterable[str], group: str) -> dict[str, int]:
    """Live keys per table, named as in the app (``customer_master`` ...)."""
    sizes = {}
    for topic in changelogs:
        name = topic[len(group) + 1:-len("-changelog")]
        sizes[name] = len(await read_table(bootstrap, topic))
    return sizes


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    try:
        await kafka_admin.delete_topics(bootstrap, names)
    except KafkaAdminError as exc:
        raise RebuildError(str(exc)) from exc


# -- the plan ------------------------------------------------------------------------------------

@dataclass
class RebuildPlan:
    group: str
    previous_group: str
    inputs: list[str]
    flow: list[str]
    sinks: list[str]
    #: changelog topics of the group that hold state now (deleted by ``wipe``)
    state_topics: list[str]
    #: this machine's table files (deleted by ``wipe``)
    local_tables: Path | None
    seeds: dict[TopicPartition, int] = field(default_factory=dict)
    #: the inputs' end offsets when the rebuild starts
    watermark: dict[TopicPartition, int] = field(default_factory=dict)
    #: reasons to refuse (overridden by ``force``)
    problems: list[str] = field(default_factory=list)
    wipe: bool = False
    #: the previous state had work left: its pending commands must not be skipped
    undrained: bool = False
    #: the app's consumer groups (Faust's and its direct stages'), where the offsets are moved
    groups: "flows.AppGroups" = field(default_factory=lambda: flows.AppGroups("", {}))

    @property
    def to_read(self) -> int:
        return sum(self.watermark.get(tp, 0) - offset for tp, offset in self.seeds.items()
                   if tp.topic in self.inputs)

    def lines(self) -> list[str]:
        out = [f"group {self.group} (previous state: group {self.previous_group})"]
        per_topic: dict[str, int] = {}
        for tp, offset in self.seeds.items():
            if tp.topic in self.inputs:
                per_topic[tp.topic] = per_topic.get(tp.topic, 0) + self.watermark.get(tp, 0) - offset
        for topic in self.inputs:
            out.append(f"  read {topic} from the beginning: {per_topic.get(topic, 0)} messages")
        for topic in self.flow:
            out.append(f"  start {topic} at its end")
        for topic in self.sinks:
            out.append(f"  start {topic} where the previous state's sinks stopped")
        if self.wipe and (self.state_topics or self.local_tables):
            out.append("  wipe: delete " + ", ".join(self.state_topics + ([str(self.local_tables)] if self.local_tables else [])))
        out.append("  stop the sources too: events arriving during the rebuild make it keep (rewrite) its commands")
        return out


async def plan_rebuild(settings: "Settings", previous_group: str | None = None, wipe: bool = False) -> RebuildPlan:
    bootstrap, prefix = settings.kafka_bootstrap_servers, settings.topic_prefix
    group = group_id(settings)
    previous = previous_group or previous_group_id(settings)
    topics = await list_topics(bootstrap)
    inputs = [t for t in input_topics(settings) if t in topics]
    missing = [t for t in input_topics(settings) if t not in topics]
    flow = [t for t in flow_topics(settings) if t in topics]
    sinks = sorted(t for t in topics if t.startswith(f"{prefix}sink."))
    if not inputs:
        raise RebuildError(f"none of the input topics exist ({', '.join(missing)}): nothing to rebuild from")

    changelogs = changelog_topics(topics, group)
    filled = sorted({tp.topic for tp, end in (await end_offsets(bootstrap, changelogs)).items() if end > 0})
    tables = table_dir(settings)
    local = tables if tables.is_dir() and any(tables.iterdir()) else None
    plan = RebuildPlan(group, previous, inputs, flow, sinks, changelogs, local, wipe=wipe,
                       groups=flows.AppGroups.of(settings, group))

    if (filled or local) and not wipe:
        where = ", ".join(filled + ([str(local)] if local else []))
        raise RebuildError(
            f"group {group} already has table state ({where}). Bump CONNECT_APP_VERSION for a clean slate, "
            "or pass --wipe to delete it (every worker machine must delete its own data directory)")
    for groups in (plan.groups, flows.AppGroups.of(settings, previous)):
        for name in await groups.live(bootstrap):
            raise RebuildError(f"consumer group {name!r} has live members: stop every worker first")

    previous_committed = await flows.AppGroups.of(settings, previous).committed(bootstrap)
    previous_lag = {tp: n for tp, n in (await _committed_lag(bootstrap, previous_committed)).items() if n}
    if previous_lag:
        plan.undrained = True
        shown = ", ".join(f"{tp.topic}[{tp.partition}]={n}" for tp, n in sorted(previous_lag.items())[:8])
        plan.problems.append(
            f"the previous state (group {previous}) had not finished: lag {shown}. Start its workers until the "
            "lag is 0, stop them, then rebuild (with --force the rebuild keeps every command it re-derives, "
            "so the sinks write them all again)")
    dlq = [t for t in topics if t.startswith(f"{prefix}dlq.")]
    if dlq:
        ends, starts = await end_offsets(bootstrap, dlq), await beginning_offsets(bootstrap, dlq)
        waiting = sum(ends[tp] - starts.get(tp, 0) for tp in ends)
        if waiting:
            plan.problems.append(
                f"{waiting} DLQ entries wait: replay them (stream-app dlq replay --all) and let them land, or purge "
                "them, before rebuilding; their versions belong to the old state")
    starts = await beginning_offsets(bootstrap, inputs)
    truncated = sorted(tp for tp, offset in starts.items() if offset > 0)
    if truncated:
        shown = ", ".join(f"{tp.topic}[{tp.partition}] from {starts[tp]}" for tp in truncated[:8])
        plan.problems.append(
            f"retention deleted the oldest input events ({shown}): the rebuilt tables would miss records only "
            "those events described. Run `stream-app backfill <system>` and let the current workers process "
            "it, then rebuild (or pass --force if the snapshots are already in the topics)")

    plan.watermark = await end_offsets(bootstrap, inputs)
    plan.seeds = {tp: starts.get(tp, 0) for tp in plan.watermark}
    plan.seeds.update(await end_offsets(bootstrap, flow))
    # the sinks go on where the previous state's stopped: at the end when it had finished
    plan.seeds.update({tp: previous_committed.get(tp, end) for tp, end in (await end_offsets(bootstrap, sinks)).items()})
    return plan


async def _committed_lag(bootstrap: str, committed: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    if not committed:
        return {}
    topics = await list_topics(bootstrap)
    present = {tp: offset for tp, offset in committed.items() if tp.topic in topics}
    ends = await end_offsets(bootstrap, {tp.topic for tp in present})
    return {tp: max(0, ends.get(tp, offset) - offset) for tp, offset in present.items()}


# -- the worker ----------------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stream_app() -> str:
    return shutil.which("stream-app") or str(Path(sys.executable).with_name("stream-app"))


class _Worker:
    """``stream-app worker`` without sinks, in its own process group, logging to a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = {**env, "CONNECT_SINK_OBJECTS": "", "CONNECT_WEB_PORT": str(_free_port())}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([_stream_app(), "worker", "--loglevel", "info"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise RebuildError(f"the rebuild worker exited with {self.proc.returncode}; log {self.log_path}:\n{tail}")

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


async def _follow(bootstrap: str, plan: RebuildPlan, worker: _Worker, timeout: float, progress: bool,
                  interval: float, flow: list[str] | None = None) -> None:
    """Show the group's progress over the inputs and the flow topics until its lag is 0. ``flow``:
    every flow topic the app may have; one the worker creates meanwhile (an app whose workers
    never ran) is watched from its start, so the rebuild does not stop while it still holds work."""
    watched = plan.inputs + plan.flow
    seeds = {tp: offset for tp, offset in plan.seeds.items() if tp.topic in watched}
    deadline = time.monotonic() + timeout if timeout else None
    zero_polls = 0
    with tqdm(total=max(1, plan.to_read), desc=f"rebuild {plan.group}", unit=" msg", file=sys.stderr,
              disable=not progress, dynamic_ncols=True) as bar:
        while True:
            worker.check()
            if flow:
                existing = await list_topics(bootstrap)
                watched = plan.inputs + [t for t in flow if t in plan.flow or t in existing]
            committed = await plan.groups.committed(bootstrap)
            ends = await end_offsets(bootstrap, watched)
            done = sum(max(0, committed.get(tp, seeds.get(tp, 0)) - seeds.get(tp, 0)) for tp in ends)
            total = sum(max(0, end - seeds.get(tp, 0)) for tp, end in ends.items())
            behind = sum(max(0, end - committed.get(tp, seeds.get(tp, 0))) for tp, end in ends.items())
            bar.total = max(total, 1)
            bar.n = min(done, bar.total)
            bar.set_postfix(lag=behind)
            bar.refresh()
            zero_polls = zero_polls + 1 if behind == 0 else 0
            if zero_polls >= 2:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise RebuildError(f"the rebuild had not caught up after {timeout:.0f}s (lag {behind}); "
                                   f"see {worker.log_path}")
            await asyncio.sleep(interval)


# -- the command -----------------------------------------------------------------------------------

async def rebuild(settings: "Settings", *, previous_group: str | None = None, wipe: bool = False,
                  keep_commands: bool = False, force: bool = False, dry_run: bool = False,
                  timeout: float = 0.0, log_path: Path | None = None, env: Mapping[str, str] | None = None,
                  progress: bool = True, say: Callable[[str], None] = print) -> int:
    """Rebuild the flow tables of the current app version from the input topics; 0 when done.

    ``env`` is the environment of the rebuild worker (default: this process's); it must
    describe the same app as ``settings``. ``timeout`` 0 waits as long as it takes.
    """
    bootstrap = settings.kafka_bootstrap_servers
    try:
        plan = await plan_rebuild(settings, previous_group, wipe)
        for line in plan.lines():
            say(line)
        for problem in plan.problems:
            say(("warning (--force): " if force else "refused: ") + problem)
        if plan.problems and not force:
            say("nothing changed")
            return 1
        if dry_run:
            say("dry run: nothing changed")
            return 0

        if wipe:
            await _delete_topics(bootstrap, plan.state_topics)
            if plan.local_tables is not None:
                shutil.rmtree(plan.local_tables)
            if plan.state_topics or plan.local_tables:
                say(f"wiped the state of {plan.group}")
        await _commit(bootstrap, plan, plan.seeds)

        log_path = log_path or Path(settings.data_dir) / f"rebuild-{time.strftime('%Y%m%d-%H%M%S')}.log"
        worker = _Worker(dict(os.environ if env is None else env), log_path)
        say(f"rebuild worker started without sinks (log: {log_path})")
        worker.start()
        started = time.monotonic()
        try:
            await _follow(bootstrap, plan, worker, timeout, progress,
                          interval=max(0.5, min(2.0, settings.broker_commit_interval)), flow=flow_topics(settings))
        finally:
            worker.stop()

        arrived = sum((await end_offsets(bootstrap, plan.inputs)).values()) - sum(plan.watermark.values())
        restated = await end_offsets(bootstrap, plan.sinks)
        produced = {tp: end - plan.seeds.get(tp, 0) for tp, end in restated.items() if end > plan.seeds.get(tp, 0)}
        count = sum(produced.values())
        if keep_commands or arrived > 0 or plan.undrained:
            reason = ("--keep-commands" if keep_commands else
                      "the previous state had not finished" if plan.undrained else
                      f"{arrived} input events arrived during the rebuild (sources running), so some commands may be new")
            say(f"kept {count} sink commands ({reason}): the sinks write them when the workers start")
        else:
            await _commit(bootstrap, plan, {tp: restated[tp] for tp in produced})
            say(f"skipped {count} restated sink commands (the previous state had sent them)")

        sizes = await table_sizes(bootstrap, changelog_topics(await list_topics(bootstrap), plan.group), plan.group)
        say("tables: " + ", ".join(f"{name} {n}" for name, n in sorted(sizes.items())))
        took = time.monotonic() - started
        say(f"done in {took:.0f}s ({plan.to_read:,} input events, {plan.to_read / max(took, 0.001):,.0f} events/s): "
            "start the workers (and the sources)")
        return 0
    except RebuildError as exc:
        say(f"stream-app rebuild: {exc}")
        return 1
