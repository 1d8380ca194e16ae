"""Project commands on the app's Faust CLI: ``stream-app kafka ...`` and friends.

Commands are declared without an app (:func:`command`); Faust finds them when the app scans
this module (``stream_app.app.COMMAND_MODULES``), and each handler reaches the app that runs it
as ``self.app`` and its settings as ``self.app.settings``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, ClassVar

import click
from faust.app.base import SCAN_COMMAND
from faust.cli import AppCommand, argument, option
from faust.utils import venusian

from connectors import registry
from connectors.errors import ConnectorError
from stream_app.dlq import DlqError, format_entry_line, purge, read_entries, replay_entries, select
from stream_app.errors import broker_unreachable, explain, quiet_connection_errors
from stream_app.flows import AppGroups, mapping_tools
from stream_app.kafka_local import LocalKafka, LocalKafkaError, broker_answers, local_bootstrap, wait_for_broker
from stream_app.anomalies import AnomalyError, list_anomalies, release_held
from stream_app.partitions import PartitionsError, grow_partitions, plan_partitions
from stream_app.privacy import PrivacyError, erase_person, export_person
from stream_app.rebuild import rebuild as run_rebuild
from stream_app.replay import ReplayError, apply, group_members, parse_time, plan, resolve_topic
from stream_app.run_source import backfill as run_backfill
from stream_app.run_source import build, run_source
from stream_app.settings import SettingsError

__all__ = ["command", "kafka", "project_commands", "ProjectCommand"]

#: the names of the commands declared here (``stream-app --help`` lists them first)
_DECLARED: set[str] = set()


class ProjectCommand(AppCommand):
    """A project command: a user's mistake ends it with what is wrong and what to do, and a
    non-zero exit (stream_app/errors.py); the traceback only with --debug or at debug level."""

    abstract: ClassVar[bool] = True  # a base class, not a command of its own

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        debugging = self.debug or self.loglevel.upper() == "DEBUG"
        if not debugging:
            quiet_connection_errors()
        try:
            return await super().execute(*args, **kwargs)
        except Exception as exc:
            explained = explain(exc, self.app.settings.kafka_bootstrap_servers)
            if explained is None or debugging:
                raise
            print(f"stream-app {self.ctx.info_name}: {explained.message}", file=sys.stderr)
            sys.exit(explained.exit_code)


def command(*options: Any) -> Callable[[Callable[..., Awaitable[Any]]], type[AppCommand]]:
    """``app.command`` without an app: the command joins the CLI of the app that scans this module."""
    def register(handler: Callable[..., Awaitable[Any]]) -> type[AppCommand]:
        cmd = ProjectCommand.from_handler(*options)(handler)
        venusian.attach(cmd, category=SCAN_COMMAND)
        _DECLARED.add(handler.__name__)
        return cmd
    return register


def project_commands() -> set[str]:
    """The commands this project declares (the rest of the CLI is Faust's)."""
    return set(_DECLARED)


def confirmed(question: str, yes: bool) -> bool:
    """``--yes``, or the user's answer; without a terminal to ask on, a UsageError saying to pass --yes."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise click.UsageError(f"{question.rstrip('?')}: there is no terminal to ask on; pass --yes to go ahead")
    return click.confirm(question, default=False)


@command(
    argument("action", type=click.Choice(["up", "down", "status", "reset"])),
    option("--port", type=int, default=None, help="Broker port (default 9092, or CONNECT_KAFKA_PORT)."),
    option("--timeout", type=float, default=90.0, help="Seconds to wait for the broker to answer."),
)
async def kafka(self: AppCommand, action: str, port: int | None, timeout: float) -> None:
    """Run a local Apache Kafka broker (KRaft, one node) for development and tests.

    up: fetch the pinned Kafka jars with Maven (once), format storage, start, wait until it
    answers; idempotent. down: stop it. status: bootstrap address and version. reset: stop it
    and delete its data. With KAFKA_BOOTSTRAP_SERVERS set, that broker is used and nothing starts.
    """
    # LocalKafka is synchronous (it polls the broker with its own event loop): keep it off ours.
    await asyncio.to_thread(_kafka_action, action, port, timeout)


def _kafka_action(action: str, port: int | None, timeout: float) -> None:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        if action == "status" or action == "up":
            ok = wait_for_broker(external, timeout=timeout if action == "up" else 10)
            state = "answering" if ok else "NOT answering"
            print(f"external broker at {external} (KAFKA_BOOTSTRAP_SERVERS): {state}; nothing started here")
            if not ok:
                sys.exit(1)
        else:
            print(f"KAFKA_BOOTSTRAP_SERVERS={external} is set: that broker is not managed here; nothing to {action}")
        return
    try:
        broker = LocalKafka(port=port)
        if action == "up":
            status = broker.up(timeout=timeout)
            print(f"bootstrap: {status.bootstrap}")
            print(_export_line(status.bootstrap))
        elif action == "down":
            broker.down()
        elif action == "reset":
            broker.reset()
        else:
            status = broker.status()
            print(status.describe())
            print(f"bootstrap: {status.bootstrap}")
            print(f"version: {status.version}")
            if not status.running:
                sys.exit(3)
    except LocalKafkaError as exc:
        print(f"stream-app kafka {action}: {exc}", file=sys.stderr)
        sys.exit(1)


def _export_line(bootstrap: str) -> str:
    """The export line ``kafka up`` prints, true for this shell: the other commands' default
    address is the local broker's (CONNECT_KAFKA_PORT, else 9092)."""
    if bootstrap != local_bootstrap():
        note = f"needed: without it the other commands use {local_bootstrap()}"
    elif os.environ.get("CONNECT_KAFKA_PORT"):
        note = f"optional while CONNECT_KAFKA_PORT={os.environ['CONNECT_KAFKA_PORT']} stays set"
    else:
        note = "optional: this is the default"
    return f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}  # {note}"


def _sandbox_installed(command_name: str) -> None:
    """The sandbox is development code: the production image leaves it out (Dockerfile)."""
    import importlib.util

    if importlib.util.find_spec("sandbox") is None:
        print(f"stream-app {command_name}: the sandbox is not installed here (the production image leaves it out); "
              "run it from a checkout: `make demo`", file=sys.stderr)
        sys.exit(2)


@command(option("--once", is_flag=True, help="Play the scenario, print the report and exit (0 only if all arrived)."))
async def demo(self: AppCommand, once: bool) -> None:
    """The sandbox, a worker and the sources playing the customer flows; runs until Ctrl-C."""
    _sandbox_installed("demo")
    from sandbox.cli import DemoError, run_demo

    bootstrap = self.app.settings.kafka_bootstrap_servers
    if not await broker_answers(bootstrap):
        print(f"stream-app demo: {broker_unreachable(bootstrap)}", file=sys.stderr)
        sys.exit(1)
    try:
        sys.exit(await run_demo(once, console_login=_demo_console_users()))
    except DemoError as exc:
        print(f"stream-app demo: {exc}", file=sys.stderr)
        sys.exit(1)


def _demo_console_users() -> str:
    """Demo users for the console the demo starts (CONNECT_CONSOLE_USERS for its processes): an
    operator and a viewer with a password made for this run, printed since the demo is local.
    Returns the line that tells the login."""
    import secrets

    from stream_app.console.auth import hash_password

    password = secrets.token_urlsafe(9)
    encoded = hash_password(password)
    os.environ["CONNECT_CONSOLE_USERS"] = json.dumps({"operator": {"role": "operator", "password": encoded},
                                                      "viewer": {"role": "viewer", "password": encoded}})
    return f"log in as operator or viewer, password {password} (made for this run)"


@command(
    argument("system", type=click.Choice(registry.names())),
    option("--metrics-port", type=int, default=None,
           help="Serve Prometheus /metrics, /healthz and /readyz on this port (default: CONNECT_METRICS_PORT; "
                "none: off)."),
)
async def source(self: AppCommand, system: str, metrics_port: int | None) -> None:
    """Run one source (Salesforce CDC, TIMS change feed, Pardot, shop webhooks) until SIGTERM or Ctrl-C."""
    current = self.app.settings
    try:
        instance = build(system, current)
    except SettingsError as exc:
        print(f"stream-app source {system}: {exc}", file=sys.stderr)
        sys.exit(2)
    port = metrics_port if metrics_port is not None else current.metrics_port
    await run_source(instance, port, current.metrics_host, current.log_level.value, health=current)


@command(
    option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on."),
    option("--salesforce-port", type=int, default=8090, show_default=True, help="Salesforce OAuth + REST."),
    option("--pubsub-port", type=int, default=7443, show_default=True, help="Salesforce Pub/Sub API (gRPC, plaintext)."),
    option("--pardot-port", type=int, default=8091, show_default=True, help="Pardot API v5."),
    option("--tims-port", type=int, default=8092, show_default=True, help="TIMS (docs/tims-openapi.yaml)."),
    option("--shop-port", type=int, default=8094, show_default=True, help="Shopify GraphQL Admin API (docs/adr/0033)."),
)
async def sandbox(self: AppCommand, host: str, salesforce_port: int, pubsub_port: int,
                  pardot_port: int, tims_port: int, shop_port: int) -> None:
    """Run the simulators of Salesforce, Pardot, TIMS and the shop until Ctrl-C (0 as a port picks a free one)."""
    _sandbox_installed("sandbox")
    from sandbox.cli import serve_forever, start_sandbox

    try:
        running = await start_sandbox(host, {"salesforce-rest": salesforce_port, "salesforce-pubsub": pubsub_port,
                                             "pardot": pardot_port, "tims": tims_port, "shop": shop_port})
    except OSError as exc:
        print(f"stream-app sandbox: {exc.strerror or exc}. Free the port or choose another with --*-port.",
              file=sys.stderr)
        sys.exit(1)
    for line in running.lines():
        print(line, flush=True)
    await serve_forever(running)


@command(
    argument("action", type=click.Choice(["check", "preview", "suggest"])),
    argument("flow", required=False),
    argument("record", required=False, type=click.Path(exists=True, dir_okay=False)),
    option("--source", default=None, help="suggest: SYSTEM.OBJECT the values come from (e.g. tims.customer)."),
    option("--target", default=None, help="suggest: SYSTEM.OBJECT they go to (canonical.customer: the customer sync's fields)."),
    option("--samples", type=click.Path(path_type=Path), default=None,
           help="suggest: JSON file {\"SYSTEM.OBJECT\": [records...]} of sample records of either side."),
    option("--out", type=click.Path(path_type=Path), default=None,
           help="suggest: write a draft mapping file here (its name, without .yaml, names the flow file)."),
)
async def mappings(self: AppCommand, action: str, flow: str | None, record: str | None, source: str | None,
                   target: str | None, samples: Path | None, out: Path | None) -> None:
    """Validate the flow mappings (check), show what one record maps to (preview FLOW RECORD.json), or
    propose field pairs between two objects (suggest --source S --target T [--samples F] [--out F]).

    RECORD.json is a source event ({"source": "salesforce", "entity": "Contact", "fields": {...}})
    or {"source": "salesforce.Contact", "fields": {...}, "links": {"salesforce_contact": "003..."}}.
    """

    try:
        if action == "suggest":
            from stream_app.suggest_mappings import run_suggest

            print(run_suggest(source, target, samples, out))
            return
        tools = mapping_tools(self.app.settings)
        if action == "check":
            for _, tool, directory in tools:
                print(tool.check(directory))
        else:
            if not flow or not record:
                raise click.UsageError("preview needs FLOW (a mapping file's name without .yaml) and RECORD.json; "
                                       "the README's command-line section has a sample record")
            known = {name: (tool, directory) for _, tool, directory in tools for name in tool.names(directory)}
            if flow not in known:
                raise ValueError(f"no mapping {flow!r}; mappings: {', '.join(known)}")
            tool, directory = known[flow]
            print(tool.preview(directory, flow, record))
    except ValueError as exc:
        print(f"stream-app mappings {action}: {exc}", file=sys.stderr)
        sys.exit(1)


@command(
    argument("action", type=click.Choice(["link", "train", "review"])),
    argument("words", nargs=-1),
    option("--left", type=click.Path(path_type=Path), default=None, help="CSV file of one system's records."),
    option("--right", type=click.Path(path_type=Path), default=None, help="CSV file of the other system's records."),
    option("--config", type=click.Path(path_type=Path), default=None,
           help="fields.yaml: the id column and role → column (per file under left:/right:, or once for both)."),
    option("--out", type=click.Path(path_type=Path), default=None, help="link: pairs.csv to write; train: the model file."),
    option("--truth", default=None, help="link: a column holding the same value for records of one person; "
                                         "prints precision, recall and F1."),
    option("--model", "model_path", type=click.Path(path_type=Path), default=None,
           help="link: a model file from `identity train` (default: the shipped model)."),
    option("--one-to-one/--many", "unique", default=True, show_default=True,
           help="link: each record linked to one record of the other file at most (the rest become review)."),
    option("--version", "model_version", default="customer-trained", show_default=True, help="train: the model's version name."),
    option("--link-threshold", type=float, default=0.99, show_default=True, help="train: match probability to link."),
    option("--review-threshold", type=float, default=0.5, show_default=True, help="train: match probability to review."),
    option("--by", default=None, help="review: the reviewer's name in the audit record (default: the OS user)."),
)
async def identity(self: AppCommand, action: str, words: tuple[str, ...], left: Path | None, right: Path | None,
                   config: Path | None, out: Path | None, truth: str | None, model_path: Path | None, unique: bool,
                   model_version: str, link_threshold: float, review_threshold: float, by: str | None) -> None:
    """Record linkage: link two CSV files (pairs.csv: left_id,right_id,score,decision), train a model by EM, or
    review the stream's borderline matches (review list | review accept ID | review reject ID)."""
    from quality.matching import MatchingError
    from stream_app.linkage import run_link, run_train

    if action == "review":
        await _review(self.app.settings, words, by)
        return
    missing = [name for name, value in (("--left", left), ("--right", right), ("--config", config), ("--out", out))
               if value is None]
    if missing or words:
        raise click.UsageError(f"identity {action} needs {', '.join(missing) or 'no arguments but options'}")
    assert left is not None and right is not None and config is not None and out is not None
    try:
        if action == "train":
            model = await asyncio.to_thread(run_train, left, right, config, out, model_version, link_threshold,
                                            review_threshold)
            print(f"model {model.version} ({model.fingerprint}) written to {out}: {model.trained.get('candidate_pairs')} "
                  f"candidate pairs, prior {model.prior:.4f}")
            return
        run = await asyncio.to_thread(run_link, left, right, config, out, truth, model_path, unique)
    except MatchingError as exc:
        print(f"stream-app identity {action}: {exc}", file=sys.stderr)
        sys.exit(2)
    per_1000 = 1000 * run.seconds / max(run.records, 1)
    print(f"{run.links} links and {run.reviews} reviews written to {out} (model {run.model.version}, "
          f"{run.model.fingerprint}; {run.seconds:.2f} s, {per_1000 * 1000:.0f} ms per 1,000 records)")
    if run.scores is not None:
        print(run.scores.line())


@command(
    option("--topic", required=True, help="Topic to reprocess (with or without CONNECT_TOPIC_PREFIX)."),
    option("--partition", "partitions", type=int, multiple=True, help="Only these partitions (repeatable)."),
    option("--from-offset", type=int, default=None, help="Reprocess from this offset."),
    option("--from-time", default=None, help="Reprocess from this time (ISO 8601, e.g. 2026-11-26T10:00:00Z)."),
    option("--dry-run", is_flag=True, help="Print current and new offsets and what would be reprocessed; change nothing."),
)
async def replay(self: AppCommand, topic: str, partitions: tuple[int, ...], from_offset: int | None,
                 from_time: str | None, dry_run: bool) -> None:
    """Reset the app's consumer-group offsets so stopped workers reprocess a topic on restart."""
    current = self.app.settings

    bootstrap = current.kafka_bootstrap_servers
    try:
        full = await resolve_topic(bootstrap, topic, current.topic_prefix)
        since = parse_time(from_time) if from_time else None
        # the group(s) that read the topic: Faust's, or the direct stages' (docs/adr/0028)
        groups = AppGroups.of(current, self.app.conf.id).readers(full)
        plans = {group: await plan(bootstrap, group, full, list(partitions) or None, from_offset, since)
                 for group in groups}
        for group, group_plans in plans.items():
            for item in group_plans:
                print(item.line(full))
            print(f"total: {sum(p.to_reprocess for p in group_plans)} messages to reprocess by group {group}")
        if dry_run:
            for group in groups:
                if await group_members(bootstrap, group):
                    print(f"note: group {group} has live members now; stop the workers before the real run")
            print("dry run: nothing changed")
            return
        for group, group_plans in plans.items():
            await apply(bootstrap, group, full, group_plans)
            print(f"done: offsets of {group} on {full} reset; start the workers to reprocess")
    except ReplayError as exc:
        print(f"stream-app replay: {exc}", file=sys.stderr)
        sys.exit(1)


@command(
    argument("system", type=click.Choice(registry.names())),
    option("--entity", "entities", multiple=True, help="Only this entity (repeatable); default: all configured."),
)
async def backfill(self: AppCommand, system: str, entities: tuple[str, ...]) -> None:
    """Snapshot existing records into the source topics (progress on stderr), then hand over to the live source."""

    current = self.app.settings

    try:
        published = await run_backfill(system, current, list(entities) or None)
    except SettingsError as exc:
        print(f"backfill {system}: {exc}", file=sys.stderr)
        sys.exit(2)
    except ConnectorError as exc:
        print(f"backfill {system} failed: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"backfill {system}: {published} events published", file=sys.stderr)


@command(
    argument("action", type=click.Choice(["list", "show", "replay", "purge"])),
    argument("ids", nargs=-1),
    option("--all", "replay_all", is_flag=True, help="replay: every entry."),
    option("--yes", is_flag=True, help="purge: do not ask."),
)
async def dlq(self: AppCommand, action: str, ids: tuple[str, ...], replay_all: bool, yes: bool) -> None:
    """Dead-lettered sink commands: list | show ID | replay (--all | ID...) | purge."""

    current = self.app.settings

    bootstrap, prefix = current.kafka_bootstrap_servers, current.topic_prefix
    try:
        if action == "purge":
            if not confirmed("Delete every DLQ entry?", yes):
                print("nothing deleted")
                return
            print(f"purged {await purge(bootstrap, prefix)} DLQ entries")
            return
        entries = await read_entries(bootstrap, prefix)
        if action == "list":
            for entry in entries:
                print(format_entry_line(entry))
            print(f"{len(entries)} entries")
        elif action == "show":
            if not ids:
                raise DlqError("show needs an ID; `stream-app dlq list` shows them")
            for entry in select(entries, ids):
                print(json.dumps(entry.shown(), indent=2, default=str))
        else:
            if replay_all == bool(ids):
                raise DlqError("replay needs --all or some IDs (not both)")
            chosen = entries if replay_all else select(entries, ids)
            count = await replay_entries(bootstrap, prefix, chosen)
            print(f"replayed {count} commands to their sink topics; the version guard skips any that newer data "
                  "has overtaken. Purge the DLQ once they landed.")
    except DlqError as exc:
        print(f"stream-app dlq {action}: {exc}", file=sys.stderr)
        sys.exit(1)


@command(
    argument("action", type=click.Choice(["list", "release"])),
    option("--customer", default=None, help="list: only this customer's; release: the customer whose change is held."),
    option("--subject", default=None, help="release: what is held, as listed (record, invoices:<id>, payments:<id>)."),
    option("--flow", default="receivables", help="release: the flow that holds it."),
    option("--held", is_flag=True, help="list: only the changes held and not released."),
)
async def anomalies(self: AppCommand, action: str, customer: str | None, subject: str | None, flow: str,
                    held: bool) -> None:
    """What the anomaly rules flagged (list), or let a held change count (release --customer C --subject S)."""
    settings = self.app.settings
    try:
        if action == "list":
            for flag in await list_anomalies(settings, customer=customer, held_only=held):
                state = "released" if flag["released"] else "HELD" if flag.get("held") else "flagged"
                print(f"{flag.get('flow')} {flag.get('customer_id')} {flag.get('subject')}: {flag.get('rule')} "
                      f"(score {flag.get('score')}) {state}; {json.dumps(flag.get('evidence'))}")
            return
        if not customer or not subject:
            raise AnomalyError("release needs --customer and --subject (as `stream-app anomalies list --held` shows them)")
        act = await release_held(settings, flow=flow, customer=customer, subject=subject)
    except AnomalyError as exc:
        print(f"stream-app anomalies {action}: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"released {act['subject']} of {act['customer_id']} in {act['flow']} (by {act['operator']}); "
          "the flow counts it from now on and writes the figures that change")


@command(
    option("--to", "to", type=int, required=True, help="The partition count every owned topic should have."),
    option("--dry-run", is_flag=True, help="Print which topics would grow; change nothing."),
    option("--force", is_flag=True, help="Go ahead although the workers have not read everything."),
    option("--yes", is_flag=True, help="Do not ask for confirmation."),
)
async def partitions(self: AppCommand, to: int, dry_run: bool, force: bool, yes: bool) -> None:
    """Grow every topic the app owns to --to partitions (workers and sources stopped), before a rebuild.

    Kafka only adds partitions and keys move with them: afterwards set CONNECT_TOPIC_PARTITIONS to
    the same count, bump CONNECT_APP_VERSION and run `stream-app rebuild` (README: Running it always-on)."""
    settings = self.app.settings
    try:
        plan = await plan_partitions(settings, to)
        for line in plan.lines():
            print(line)
        if not plan.grow:
            print(f"nothing to do: every owned topic has {to} partitions")
            return
        if dry_run:
            print(f"dry run: {len(plan.grow)} topic(s) would grow; nothing changed")
            return
        if not confirmed(f"Add partitions to {len(plan.grow)} topic(s)? Kafka cannot take them away", yes):
            print("nothing changed")
            return
        await grow_partitions(settings, plan, force=force)
    except PartitionsError as exc:
        print(f"stream-app partitions: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"{len(plan.grow)} topic(s) now have {to} partitions. Next: set CONNECT_TOPIC_PARTITIONS={to}, bump "
          f"CONNECT_APP_VERSION (now {settings.app_version}) and run `stream-app rebuild`; then start the workers "
          "and the sources")


async def _review(settings: Any, words: tuple[str, ...], by: str | None) -> None:
    """``identity review list | accept ID | reject ID`` (stream_app/review.py)."""
    import getpass

    from stream_app.review import ReviewError, decide_review, read_reviews

    if words[:1] == ("list",) and len(words) == 1:
        reviews = await read_reviews(settings)
        for review in reviews.values():
            print(review.line())
        print(f"{sum(r.status == 'open' for r in reviews.values())} open of {len(reviews)} reviews")
        return
    if len(words) != 2 or words[0] not in ("accept", "reject"):
        raise click.UsageError("identity review list | identity review accept ID | identity review reject ID")
    try:
        review = await decide_review(settings, words[1], words[0], by or getpass.getuser())
    except ReviewError as exc:
        print(f"stream-app identity review: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"review {review.review_id}: {review.status} (recorded on audit.match_review; the workers carry it out, "
          "each merge and unmerge recorded on audit.merges)")


@command(
    argument("action", type=click.Choice(["export", "erase"])),
    option("--email", default=None, help="The person's email (matched as the flows normalise emails)."),
    option("--customer", default=None, help="The person's customer key (the golden record's key)."),
    option("--dry-run", is_flag=True, help="erase: print what would be deleted or anonymised; change nothing."),
)
async def privacy(self: AppCommand, action: str, email: str | None, customer: str | None, dry_run: bool) -> None:
    """Personal data: export (--email E | --customer KEY) prints what the flows hold about one person as JSON;
    erase deletes or anonymises them in every system by the policy (CONNECT_PRIVACY_POLICY), forgets them in
    every table and keeps late or replayed events from bringing them back."""
    try:
        if action == "export":
            out = await export_person(self.app.settings, email=email, customer=customer)
        else:
            out = await erase_person(self.app.settings, email=email, customer=customer, dry_run=dry_run)
    except PrivacyError as exc:
        print(f"stream-app privacy {action}: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(out, indent=2, default=str))
    if action == "erase" and not dry_run:
        print("erasure queued: the workers' sinks make the writes (failures go to dlq.<system>); the person's "
              "events are dropped from now on; recorded on audit.privacy", file=sys.stderr)


@command(
    argument("action", type=click.Choice(["serve", "hash-password"]), default="serve", required=False),
    option("--port", type=int, default=None, help="serve: port (default CONNECT_CONSOLE_PORT, 6070)."),
)
async def console(self: AppCommand, action: str, port: int | None) -> None:
    """The ops console (web pages, login required): serve, or hash-password (reads it from stdin)."""
    from stream_app.console.auth import UsersError, hash_password

    if action == "hash-password":
        print(hash_password(_read_password()))
        return
    from stream_app.console.server import serve

    current = self.app.settings if port is None else self.app.settings.model_copy(update={"console_port": port})
    try:
        await serve(current, ready=lambda line: print(line, flush=True))
    except UsersError as exc:
        print(f"stream-app console: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"stream-app console: cannot listen on {current.console_host}:{current.console_port} "
              f"({exc.strerror or exc}); choose another with CONNECT_CONSOLE_PORT or --port", file=sys.stderr)
        sys.exit(1)


def _read_password() -> str:
    """The password to hash: asked twice on a terminal, else the first line of standard input."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            raise click.UsageError("the two passwords differ")
    else:
        first = sys.stdin.readline().rstrip("\n")
    if len(first) < 8:
        raise click.UsageError("the password is shorter than 8 characters")
    return first


@command(
    option("--wipe", is_flag=True, help="Delete the group's table changelogs and this machine's table files first."),
    option("--previous-group", default=None, help="Group of the state being replaced (default: the previous app version's)."),
    option("--keep-commands", is_flag=True, help="Let the sinks write the commands the rebuild derives again (default: skip them)."),
    option("--force", is_flag=True, help="Go ahead despite failed checks (unfinished previous state, DLQ entries, truncated topics)."),
    option("--dry-run", is_flag=True, help="Print the plan and the checks; change nothing."),
    option("--timeout", type=float, default=0.0, help="Give up after this many seconds (0: no limit)."),
    option("--yes", is_flag=True, help="--wipe: do not ask."),
)
async def rebuild(self: AppCommand, wipe: bool, previous_group: str | None, keep_commands: bool, force: bool,
                  dry_run: bool, timeout: float, yes: bool) -> None:
    """Rebuild the flow tables from the source topics (workers and sources stopped), with progress."""
    current = self.app.settings

    if wipe and not dry_run and not confirmed("Delete this group's table state and rebuild it?", yes):
        print("nothing changed")
        return
    sys.exit(await run_rebuild(current, previous_group=previous_group, wipe=wipe, keep_commands=keep_commands,
                               force=force, dry_run=dry_run, timeout=timeout))
