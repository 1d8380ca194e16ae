"""The console's web application: pages and operator actions (docs/adr/0031).

:func:`build_console` makes the aiohttp application from the settings (nothing connects until
it starts); :func:`serve` runs it until cancelled. Pages are rendered on the server from Jinja2
templates (autoescaped); htmx, vendored under ``static/``, only refreshes the dead-letter table
as filters change, so every read-only page works without JavaScript.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import jinja2
from aiohttp import web
from aiohttp_session import get_session

from connectors.redact import redact_fields, redact_text
from stream_app.console import security
from stream_app.console.audit import OperatorAudit
from stream_app.console.auth import User, parse_users
from stream_app.console.letters import Filter, LetterBox
from stream_app.console import mapping_edit, mapping_rows
from stream_app.console.mappings import files_signature, mapping_files, parse_record
from stream_app.console.mappings import preview as preview_mapping
from stream_app.console.mappings import tool_for as mapping_tool_for
from stream_app.console.worker_figures import WorkerFigures
from stream_app.console.people import Conflicts, People, record_url
from stream_app.console.tail import TopicTail, newest_records
from stream_app.console import flow_view
from stream_app import control
from stream_app.dlq import purge_topics, quarantine_replay_problem, replay_entries, replay_quarantined
from stream_app.flows import AppGroups, enabled_flows
from stream_app.rebuild import group_id
from stream_app.topics import AUDIT_OPERATOR

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["build_console", "serve", "PAGE_SIZE"]

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
#: rows per page of the dead-letter list
PAGE_SIZE = 100
_STATE = web.AppKey("console", dict)


class Console:
    """What the pages read and write: the letters, the people, the conflicts, the audit log."""

    def __init__(self, settings: "Settings") -> None:
        self.settings = settings
        flows = [flow.name for flow in enabled_flows(settings)]
        self.letters = LetterBox(settings.kafka_bootstrap_servers, settings.topic_prefix, flows)
        self.people = People(settings)
        self.conflicts = Conflicts(settings)
        self.audit = OperatorAudit(settings.kafka_bootstrap_servers, settings.topic(AUDIT_OPERATOR),
                                   replication=settings.topic_replication_factor)
        #: pause, resume, reload: read by every worker (docs/adr/0037)
        self.control = control.ControlWriter(settings.kafka_bootstrap_servers, settings.topic(control.CONTROL_FLOWS),
                                             replication=settings.topic_replication_factor)
        #: the last record of each key of control.flows: pause state, workers' reports
        self.control_state: dict[str, dict[str, Any]] = {}
        self.control_tail = TopicTail(settings.kafka_bootstrap_servers, [settings.topic(control.CONTROL_FLOWS)],
                                      keep=self._keep_control, trim=lambda tp, first: None)
        #: (the files' signature, what the mappings page shows of them)
        self.mappings_cache: tuple[Any, list[Any]] | None = None
        #: the flows page's lag by topic and newest event by source topic
        self.lag, self.newest = _figures_of(settings)
        self.templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                            autoescape=True, undefined=jinja2.StrictUndefined)
        self.worker = WorkerFigures(f"http://{settings.web_host}:{settings.web_port}/metrics")
        self.templates.filters["pretty"] = lambda value: json.dumps(value, indent=2, default=str, ensure_ascii=False)

    def _keep_control(self, record: Any) -> None:
        try:
            value = json.loads(record.value)
        except (TypeError, ValueError):
            return
        if isinstance(value, dict) and record.key:
            self.control_state[record.key.decode(errors="replace")] = value

    async def warm_up(self) -> None:
        """Read the topics once at start, so the first pages need not (a page that comes
        earlier waits for the same read)."""
        for tail in (self.letters.tail, self.people.tail, self.conflicts.tail, self.control_tail):
            try:
                await tail.catch_up()
            except Exception as exc:  # noqa: BLE001 - the pages read again and say what is wrong
                log.warning("console: first read of %s failed (%s)", ", ".join(tail.topics)[:200], type(exc).__name__)
        # what was read stays for the console's life: out of the collector's rounds, which would
        # otherwise walk millions of kept objects now and then and stall a page (gc.freeze)
        gc.freeze()

    async def close(self) -> None:
        for tail in (self.letters.tail, self.people.tail, self.conflicts.tail, self.control_tail):
            await tail.close()
        await self.audit.stop()
        await self.control.stop()
        await self.worker.close()


def _console(request: web.Request) -> Console:
    return request.app[_STATE]["console"]  # type: ignore[no-any-return]


async def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    console = _console(request)
    user = request.get(security.USER)
    flash = None
    if user is not None:
        session = await get_session(request)
        flash = session.pop("flash", None)
    html = console.templates.get_template(template).render(
        user=user, csrf=await security.csrf_token(request), flash=flash, path=request.path, **context)
    return web.Response(text=html, content_type="text/html", status=status)


async def _flash(request: web.Request, message: str) -> None:
    (await get_session(request))["flash"] = message


def _masked(user: User, value: Any) -> Any:
    """Emails and phones masked for viewers; operators see the values."""
    if user.operator:
        return value
    if isinstance(value, dict):
        return redact_fields(value)
    if isinstance(value, list):
        return [_masked(user, item) for item in value]
    return redact_text(value) if isinstance(value, str) else value


# -- login -----------------------------------------------------------------------------------------

async def login_page(request: web.Request) -> web.Response:
    return await render(request, "login.html", error=None, next=request.query.get("next", "/"))


async def login_post(request: web.Request) -> web.Response:
    form = await request.post()
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    target = str(form.get("next") or "/")
    if not target.startswith("/") or target[1:2] in ("/", "\\"):  # only a path here: never another site
        target = "/"
    try:
        user = await security.login(request, name, password)
    except security.TooManyFailures as paused:
        log.info("console: logins paused after repeated failures")
        return await render(request, "login.html", status=429, next=target,
                            error=f"Too many failed logins; try again in {paused.seconds // 60 + 1} minutes.")
    if user is None:
        log.info("console: a login failed")
        return await render(request, "login.html", status=401, error="Wrong user name or password.", next=target)
    log.info("console: %s logged in (%s)", user.name, user.role.value)
    raise web.HTTPSeeOther(target)


async def logout_post(request: web.Request) -> web.Response:
    await security.logout(request)
    raise web.HTTPSeeOther("/login")


# -- dead letters and quarantine ----------------------------------------------------------------------

def _filter(query: Any) -> Filter:
    return Filter(kind=query.get("kind", ""), source=query.get("source", ""), object=query.get("object", ""),
                  error=query.get("error", "").strip())


async def letters_page(request: web.Request) -> web.Response:
    box = _console(request).letters
    await box.refresh()
    wanted = _filter(request.query)
    chosen = box.select(wanted)
    try:
        page = max(1, int(request.query.get("page", "1")))
    except ValueError:
        page = 1
    shown = chosen[::-1][(page - 1) * PAGE_SIZE: page * PAGE_SIZE]  # newest first
    user = request[security.USER]
    rows = [{"id": letter.id, "kind": letter.kind, "source": letter.source, "object": letter.object,
             "error_code": letter.error_code, "error": _masked(user, letter.error)[:160],
             "replayable": letter.replayable} for letter in shown]
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    return await render(request, "letters.html", rows=rows, total=len(chosen), page=page, pages=pages,
                        filter=wanted, facets=box.facets(), query=request.query)


async def letter_page(request: web.Request) -> web.Response:
    box = _console(request).letters
    await box.refresh()
    letter = box.find(request.match_info["letter_id"])
    if letter is None:
        return await render(request, "missing.html", status=404, what=f"No dead letter {request.match_info['letter_id']}")
    user = request[security.USER]
    if letter.kind == "dlq":
        value = letter.value if user.operator else letter.dlq_entry().shown()
    else:
        value = _masked(user, letter.value)
    return await render(request, "letter.html", letter=letter, value=value)


async def replay_post(request: web.Request) -> web.Response:
    """Dead letters back to their sink topics; quarantined messages back to the topic they came
    from (those whose entry names it and keeps the message whole). "All" means every dead letter."""
    user = security.require_operator(request)
    console = _console(request)
    form = await request.post()
    await console.letters.refresh()
    if form.get("all"):
        chosen = console.letters.select(Filter(kind="dlq"))
    else:
        wanted = [str(v) for v in form.getall("id", [])]
        chosen = [letter for letter in (console.letters.find(i) for i in wanted) if letter is not None]
    dead = [letter for letter in chosen if letter.kind == "dlq"]
    held = [letter for letter in chosen if letter.kind == "quarantine"]
    refused = [(letter.id, problem) for letter in held
               if (problem := quarantine_replay_problem(letter.value)) is not None]
    held = [letter for letter in held if quarantine_replay_problem(letter.value) is None]
    said = []
    if dead:
        ids = [letter.id for letter in dead]
        await console.audit.record(user, "dlq.replay", ids=ids[:1000], count=len(ids))
        count = await replay_entries(console.settings.kafka_bootstrap_servers, console.settings.topic_prefix,
                                     [letter.dlq_entry() for letter in dead])
        said.append(f"Replayed {count} dead letter{'s' if count != 1 else ''} to their sink topics.")
    if held:
        ids = [letter.id for letter in held]
        await console.audit.record(user, "quarantine.replay", ids=ids[:1000], count=len(ids))
        count = await replay_quarantined(console.settings.kafka_bootstrap_servers, [letter.value for letter in held])
        said.append(f"Replayed {count} quarantined message{'s' if count != 1 else ''} to the topics they came from.")
    if refused:
        said.append(f"Not replayed: {refused[0][0]}: {refused[0][1]}"
                    + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else "") + ".")
    if not dead and not held and not refused:
        said.append("Nothing replayed: choose dead letters or quarantined messages.")
    elif dead or held:
        said.append("Purge them once they landed.")
    await _flash(request, " ".join(said))
    raise web.HTTPSeeOther("/letters")


def _purge_topics(console: Console, kind: str) -> list[str]:
    box = console.letters
    return list(box.dlq_topics) if kind == "dlq" else list(box.quarantine_topics)


async def purge_page(request: web.Request) -> web.Response:
    security.require_operator(request)
    kind = request.query.get("kind", "dlq")
    if kind not in ("dlq", "quarantine"):
        raise web.HTTPBadRequest(text="kind is dlq or quarantine")
    box = _console(request).letters
    await box.refresh()
    return await render(request, "purge.html", kind=kind, count=len(box.select(Filter(kind=kind))), error=None)


async def purge_post(request: web.Request) -> web.Response:
    user = security.require_operator(request)
    console = _console(request)
    form = await request.post()
    kind = str(form.get("kind", ""))
    if kind not in ("dlq", "quarantine"):
        raise web.HTTPBadRequest(text="kind is dlq or quarantine")
    if str(form.get("confirm", "")).strip().lower() != "purge":
        await console.letters.refresh()
        return await render(request, "purge.html", status=400, kind=kind,
                            count=len(console.letters.select(Filter(kind=kind))),
                            error="Type purge in the box to confirm.")
    await console.audit.record(user, f"{kind}.purge")
    purged = await purge_topics(console.settings.kafka_bootstrap_servers, _purge_topics(console, kind))
    await _flash(request, f"Purged {purged} {'dead letters' if kind == 'dlq' else 'quarantined messages'}.")
    raise web.HTTPSeeOther("/letters")


# -- customers, conflicts, flows --------------------------------------------------------------------

def _golden_view(console: Console, user: User, person: dict[str, Any]) -> dict[str, Any]:
    record = person.get("golden_record") or {}
    fields = [{"name": name, "value": _masked(user, {name: slot.get("v")})[name] if isinstance(slot, dict) else slot,
               "source": slot.get("src") if isinstance(slot, dict) else None,
               "time": _when(slot.get("ts")) if isinstance(slot, dict) else None}
              for name, slot in sorted((record.get("fields") or {}).items())]
    links = [{"name": name, "id": value, "url": record_url(console.settings, name, str(value))}
             for name, value in sorted((record.get("links") or {}).items()) if value]
    identities = _masked(user, list(person.get("identity_entries") or []))
    return {"key": person.get("customer_key"), "fields": fields, "links": links, "identities": identities,
            "events": list(person.get("recent_event_ids") or [])[-20:][::-1], "version": record.get("version")}


def _when(ms: Any) -> str | None:
    if not isinstance(ms, (int, float)):
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + " UTC"


async def customers_page(request: web.Request) -> web.Response:
    console = _console(request)
    user = request[security.USER]
    query = request.query.get("q", "").strip()
    people: list[dict[str, Any]] = []
    if query:
        found = await console.people.search(query) or {}
        people = [{"flow": flow, **_golden_view(console, user, person)} for flow, person in found.items()]
    return await render(request, "customers.html", q=query, people=people, searched=bool(query))


async def conflicts_page(request: web.Request) -> web.Response:
    console = _console(request)
    user = request[security.USER]
    customer, field_name = request.query.get("customer", "").strip(), request.query.get("field", "").strip()
    entries = await console.conflicts.select(customer, field_name)
    rows = [{"customer": e.get("customer_key"), "field": e.get("field"), "rule": e.get("rule"),
             "owner": e.get("owner"), "flow": e.get("flow", ""),
             "winner": _masked(user, {e.get("field") or "value": (e.get("winner") or {}).get("value")}),
             "winner_system": (e.get("winner") or {}).get("system"),
             "loser": _masked(user, {e.get("field") or "value": (e.get("loser") or {}).get("value")}),
             "loser_system": (e.get("loser") or {}).get("system"),
             "time": _when((e.get("winner") or {}).get("commit_timestamp"))} for e in entries[::-1][:500]]
    return await render(request, "conflicts.html", rows=rows, total=len(entries), customer=customer, field=field_name)


#: seconds the flows page reuses the lag and newest events it read (each read is a few round trips)
LAG_CACHE = 5.0


class Refreshed:
    """A figure the flows page shows: read when first asked; afterwards the page gets the last
    value at once and, once it is :data:`LAG_CACHE` seconds old, a read in the background
    replaces it (under load a read takes seconds: a page must not wait for it)."""

    def __init__(self, what: str, read: Callable[[list[str]], Awaitable[dict[str, int]]]) -> None:
        self.what, self._read = what, read
        self._value: dict[str, int] | None = None
        self._at = 0.0
        self._reading: asyncio.Task[None] | None = None

    async def _refresh(self, topics: list[str]) -> None:
        try:
            self._value = await self._read(topics)
        except Exception as exc:  # noqa: BLE001 - the page shows the rest
            log.warning("console: %s not read (%s)", self.what, type(exc).__name__)
            self._value = self._value or {}
        self._at = time.monotonic()

    async def get(self, topics: list[str]) -> dict[str, int]:
        if self._value is None:
            await self._refresh(topics)
        elif time.monotonic() - self._at >= LAG_CACHE and (self._reading is None or self._reading.done()):
            self._reading = asyncio.create_task(self._refresh(topics))
        return self._value or {}


def _figures_of(settings: "Settings") -> tuple[Refreshed, Refreshed]:
    """(lag by topic, topic → its newest record's timestamp) for the flows page."""
    groups = AppGroups.of(settings, group_id(settings))

    async def lag(topics: list[str]) -> dict[str, int]:
        by_topic: dict[str, int] = {}
        for tp, behind in (await groups.lag(settings.kafka_bootstrap_servers, topics)).items():
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + behind
        return by_topic

    async def newest(topics: list[str]) -> dict[str, int]:
        found = await newest_records(settings.kafka_bootstrap_servers, topics)
        return {topic: record.timestamp for topic, record in found.items()}

    return Refreshed("consumer lag", lag), Refreshed("newest events", newest)


async def flows_page(request: web.Request) -> web.Response:
    console = _console(request)
    settings = console.settings
    await console.control_tail.catch_up()
    flows = []
    for flow in enabled_flows(settings):
        state = control.latest_by_key(console.control_state, flow.name)
        flows.append({"name": flow.name, "systems": list(flow.sources),
                      "sources": [settings.topic(name) for name in (*flow.source_topics, *flow.link_topics)],
                      "stages": [settings.topic(name) for name in flow.internal_topics],
                      "direct": [stage for stage, _ in flow.direct_stages], "tables": list(flow.tables),
                      "quarantine": settings.topic(flow.quarantine_topic), "paused": state["paused"],
                      "pause": state["pause"], "done": state["done"][:6]})
    topics = sorted({t for flow in flows for t in (*flow["sources"], *flow["stages"])})
    lag = await console.lag.get(topics)
    newest = await console.newest.get(sorted({t for flow in flows for t in flow["sources"]}))
    for flow in flows:
        flow["sources"] = [(name, lag.get(name)) for name in flow["sources"]]
        flow["stages"] = [(name, lag.get(name)) for name in flow["stages"]]
    figures = await console.worker.read()
    for flow in flows:
        flow["figures"] = figures[flow["name"]].rows if flow["name"] in figures else []
        flow["drawing"] = flow_view.draw(flow, flow["figures"], newest)
    return await render(request, "flows.html", flows=flows, metrics_url=console.worker.url,
                        metrics_problem=console.worker.problem, box=(flow_view.BOX_WIDTH, flow_view.BOX_HEIGHT),
                        when=_when)


async def pause_post(request: web.Request) -> web.Response:
    """Pause or resume a flow on every worker (docs/adr/0037): audited first, then sent."""
    user = security.require_operator(request)
    console = _console(request)
    flow, action = request.match_info["flow"], request.match_info["action"]
    if action not in ("pause", "resume") or flow not in {f.name for f in enabled_flows(console.settings)}:
        raise web.HTTPNotFound(text="no such flow or action")
    await console.audit.record(user, f"flow.{action}", flow=flow)
    await console.control.send(*control.command(action, flow, user.name))
    log.info("console: %s asked the workers to %s flow %s", user.name, action, flow)
    await _flash(request, f"Asked the workers to {action} {flow}; each reports below when done.")
    raise web.HTTPSeeOther(f"/flows#flow-{flow}")


async def mappings_page(request: web.Request, tried: dict[str, Any] | None = None,
                        status: int = 200) -> web.Response:
    console = _console(request)
    signature = await asyncio.to_thread(files_signature, console.settings)
    if console.mappings_cache is None or console.mappings_cache[0] != signature:
        console.mappings_cache = (signature, await asyncio.to_thread(mapping_files, console.settings))
    files = console.mappings_cache[1]
    return await render(request, "mappings.html", status=status, files=files, tried=tried or {})


async def preview_post(request: web.Request) -> web.Response:
    """A preview changes nothing: viewers may ask for one too (a POST for the size of the record)."""
    form = await request.post()
    flow, name, record = str(form.get("flow", "")), str(form.get("mapping", "")), str(form.get("record", ""))
    tried: dict[str, Any] = {"flow": flow, "mapping": name, "record": record}
    try:
        output = await asyncio.to_thread(preview_mapping, _console(request).settings, flow, name, record)
        tried["output"] = _masked(request[security.USER], output)
    except ValueError as exc:
        tried["error"] = str(exc)
        return await mappings_page(request, tried, status=400)
    return await mappings_page(request, tried)


# -- editing a mapping (docs/adr/0037) ------------------------------------------------------------

def _mapping_names(request: web.Request) -> tuple[str, str]:
    return request.match_info["flow"], request.match_info["name"]


async def _edit_page(request: web.Request, text: str, based_on: str, status: int = 200,
                     row_refused: "mapping_rows.RowsRefused | None" = None, **shown: Any) -> web.Response:
    flow, name = _mapping_names(request)
    context: dict[str, Any] = {"verdict": None, "record": "", "output": None, "record_error": None, "diff": None,
                               "reviewed": None, "latest_topic": None, "refused": None}
    context.update(shown)
    verdict = context["verdict"]
    lines = text.splitlines()
    marked = {p.line for p in verdict.problems if p.line and p.file == f"{name}.yaml"} if verdict is not None else set()
    tool, _directory = await asyncio.to_thread(mapping_tool_for, _console(request).settings, flow, name)
    owners = tool.owners() if callable(getattr(tool, "owners", None)) else {}
    problems = [p for p in verdict.problems if p.file == f"{name}.yaml"] if verdict is not None else []
    context.update(await asyncio.to_thread(mapping_rows.table, f"{name}.yaml", text, problems, row_refused, owners))
    return await render(request, "mapping_edit.html", status=status, flow=flow, name=name, text=text,
                        based_on=based_on, lines=lines, marked=marked, **context)


def _with_rows(text: str, form: Any, action: str) -> str:
    """``text`` with the row changes of the form written in (docs/adr/0037, addendum). The rows
    were drawn from the text whose digest is ``rows_of``; when the text was edited since, a row
    action is refused and the other actions take the text as it is."""
    if str(form.get("rows_of", "")) != mapping_edit.digest(text):
        if mapping_rows.is_row_action(action):
            raise mapping_rows.RowsRefused({None: ["the text was edited since the rows were drawn: check the text "
                                                   "first, then change the rows"]})
        return text
    try:
        return mapping_rows.apply_form(text, form, action)
    except mapping_rows.RowsRefused:
        raise
    except ValueError as exc:
        raise mapping_rows.RowsRefused({None: [str(exc)]}) from None


async def mapping_edit_page(request: web.Request) -> web.Response:
    security.require_operator(request)
    flow, name = _mapping_names(request)
    try:
        _tool, directory = await asyncio.to_thread(mapping_tool_for, _console(request).settings, flow, name)
    except ValueError as exc:
        return await render(request, "missing.html", status=404, what=str(exc))
    text = (directory / f"{name}.yaml").read_text()
    return await _edit_page(request, text, mapping_edit.digest(text))


async def mapping_edit_post(request: web.Request) -> web.Response:
    """One form, five buttons: check, preview (a pasted record or the newest real event),
    review (the diff), save (only the text that was reviewed); and the rows table's apply, add
    and delete, which write the rows into the text before the same check."""
    user = security.require_operator(request)
    console = _console(request)
    settings = console.settings
    flow, name = _mapping_names(request)
    form = await request.post()
    text, based_on = str(form.get("text", "")).replace("\r\n", "\n"), str(form.get("based_on", ""))
    action, record_text = str(form.get("action", "check")), str(form.get("record", ""))
    try:
        await asyncio.to_thread(mapping_tool_for, settings, flow, name)
    except ValueError as exc:
        return await render(request, "missing.html", status=404, what=str(exc))
    try:
        text = _with_rows(text, form, action)
    except mapping_rows.RowsRefused as refused:
        return await _edit_page(request, text, based_on, status=400, row_refused=refused, record=record_text)
    verdict = await asyncio.to_thread(mapping_edit.check_text, settings, flow, name, text)
    shown: dict[str, Any] = {"verdict": verdict, "record": record_text}
    if not verdict.ok:
        return await _edit_page(request, text, based_on, status=400, **shown)
    if action in ("preview", "latest"):
        return await _mapping_preview(request, text, based_on, action, shown)
    if action == "review":
        current = (await asyncio.to_thread(mapping_tool_for, settings, flow, name))[1] / f"{name}.yaml"
        shown.update(diff=mapping_edit.diff(current.read_text(), text, name) or "(no change)",
                     reviewed=mapping_edit.digest(text))
        return await _edit_page(request, text, based_on, **shown)
    if action == "save":
        return await _mapping_save(request, user, text, based_on, str(form.get("reviewed", "")), shown)
    return await _edit_page(request, text, based_on, **shown)


async def _mapping_preview(request: web.Request, text: str, based_on: str, action: str,
                           shown: dict[str, Any]) -> web.Response:
    settings = _console(request).settings
    flow, name = _mapping_names(request)
    try:
        if action == "latest":
            latest = await mapping_edit.latest_event(settings, flow)
            if latest is None:
                raise ValueError(f"the sources of {flow} hold no event yet")
            shown["latest_topic"], record = latest[0], latest[1]
            shown["record"] = json.dumps(record, indent=2, ensure_ascii=False)
        else:
            record = parse_record(str(shown["record"]))
        shown["output"] = await asyncio.to_thread(mapping_edit.preview_text, settings, flow, name, text, record)
    except ValueError as exc:
        shown["record_error"] = str(exc)
        return await _edit_page(request, text, based_on, status=400, **shown)
    return await _edit_page(request, text, based_on, **shown)


async def _mapping_save(request: web.Request, user: User, text: str, based_on: str, reviewed: str,
                        shown: dict[str, Any]) -> web.Response:
    console = _console(request)
    flow, name = _mapping_names(request)
    if reviewed != mapping_edit.digest(text):
        return await _edit_page(request, text, based_on, status=400,
                                refused="Review the diff of this text first (the text changed since).", **shown)
    try:
        plan = await asyncio.to_thread(mapping_edit.plan_save, console.settings, flow, name, text, based_on)
    except mapping_edit.SaveRefused as exc:
        return await _edit_page(request, text, based_on, status=409, refused=str(exc), **shown)
    await console.audit.record(user, "mapping.save", flow=flow, file=str(plan.path), before=based_on,
                               after=mapping_edit.digest(text), diff=plan.diff[:20_000])
    await asyncio.to_thread(mapping_edit.write, plan, text)
    await console.control.send(*control.command("reload", flow, user.name, file=plan.path.name))
    log.info("console: %s saved mapping %s of flow %s", user.name, name, flow)
    await _flash(request, f"Saved {plan.path}. The workers were told to reload {flow}'s mappings; "
                          "the flows page shows what each answered.")
    raise web.HTTPSeeOther(f"/mappings#{flow}-{name}")


async def index(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/letters")


# -- the application ------------------------------------------------------------------------------

def build_console(settings: "Settings") -> web.Application:
    """The console application; raises UsersError when CONNECT_CONSOLE_USERS is unusable."""
    users = parse_users(settings.console_users.get_secret_value() if settings.console_users else None)
    app = web.Application(client_max_size=256 * 1024)
    secret = settings.console_session_key.get_secret_value() if settings.console_session_key else None
    origins = frozenset({settings.console_url.rstrip("/")} if settings.console_url else set())
    security.install(app, users, secret=secret, max_age=settings.console_session_max_age,
                     secure=settings.console_secure_cookie, origins=origins)
    console = Console(settings)
    app[_STATE] = {"console": console}

    async def lifecycle(_: web.Application) -> Any:
        await console.audit.start()
        await console.control.start()
        warming = asyncio.create_task(console.warm_up())
        yield
        warming.cancel()
        await console.close()

    app.cleanup_ctx.append(lifecycle)
    app.add_routes([
        web.get("/", index), web.get("/login", login_page), web.post("/login", login_post),
        web.post("/logout", logout_post),
        web.get("/letters", letters_page), web.get("/letters/purge", purge_page),
        web.post("/letters/purge", purge_post), web.post("/letters/replay", replay_post),
        web.get("/letters/{letter_id}", letter_page),
        web.get("/customers", customers_page), web.get("/conflicts", conflicts_page), web.get("/flows", flows_page),
        web.get("/mappings", mappings_page), web.post("/mappings/preview", preview_post),
        web.post("/flows/{flow}/{action}", pause_post),
        web.get("/mappings/{flow}/{name}/edit", mapping_edit_page),
        web.post("/mappings/{flow}/{name}/edit", mapping_edit_post),
        web.static("/static", HERE / "static"),
    ])
    return app


async def serve(settings: "Settings", ready: Any = print) -> None:
    """Run the console until cancelled; ``ready(line)`` is told its URL once it listens."""
    from stream_app.console import console_url

    app = build_console(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.console_host, settings.console_port)
    await site.start()
    try:
        ready(f"console: {console_url(settings)}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
