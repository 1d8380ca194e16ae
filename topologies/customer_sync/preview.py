"""What `stream-app mappings check|preview` prints: validation, and one record mapped."""

from __future__ import annotations

import json
from pathlib import Path

from topologies.customer_sync.golden import DEFAULT_OWNERS
from topologies.customer_sync.mapping import DEFAULT_MAPPING_DIR, load_mappings

__all__ = ["check", "preview", "CustomerSyncMappings"]


def check(directory: Path | None) -> str:
    mappings = load_mappings(directory)
    lines = [f"ok: {len(mappings.files)} flow files in {directory or DEFAULT_MAPPING_DIR}"]
    lines += [f"  inbound  {source}: {len(rules)} fields" for source, rules in mappings.inbound.items()]
    lines += [f"  outbound {target}: {len(spec.fields)} fields, key {' then '.join(f'{f} ({l})' for f, l in spec.keys)}"
              + (", with create_when" if spec.create_when else "") for target, spec in mappings.outbound.items()]
    return "\n".join(lines)


def preview(directory: Path | None, flow: str, record_file: str) -> str:
    mappings = load_mappings(directory)
    if f"{flow}.yaml" not in mappings.files:
        raise ValueError(f"no flow {flow!r}; flows: {', '.join(f.removesuffix('.yaml') for f in mappings.files)}")
    try:
        record = json.loads(Path(record_file).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{record_file}: not JSON ({exc})") from None
    source = record.get("source", "")
    if "entity" in record:
        source = f"{source}.{record['entity']}"
    if source not in mappings.inbound:
        raise ValueError(f"{record_file}: no inbound mapping for {source!r}; known: {', '.join(mappings.inbound)}")
    canonical = mappings.to_canonical(source, record.get("fields", {}))
    links = record.get("links", {})
    out = {"source": source, "canonical": canonical, "outbound": {}}
    flow_targets = [t for t, spec in mappings.outbound.items() if f"{flow}.yaml" in spec.files]
    for target in flow_targets:
        key = mappings.key_for(target, links)
        out["outbound"][target] = {
            "key": None if key is None else {"field": key[0], "value": key[1], "record_exists": key[2]},
            "may_create": mappings.may_create(target, canonical, links),
            "fields": {k: v for k, v in mappings.to_target(target, canonical, links).items() if v is not None},
        }
    return json.dumps(out, indent=2, default=str)


class CustomerSyncMappings:
    """The customer sync's answer to ``stream-app mappings`` (``topologies.flow.MappingsTool``)."""

    def check(self, directory: Path) -> str:
        return check(directory)

    def preview(self, directory: Path, name: str, record_file: str) -> str:
        return preview(directory, name, record_file)

    def owners(self) -> dict[str, str]:
        """Canonical field → the system whose edits win (the console's mappings table)."""
        return dict(DEFAULT_OWNERS)

    def names(self, directory: Path) -> list[str]:
        """The mapping files' names (``lead_onboarding``, ...): what ``preview`` takes."""
        return [file.removesuffix(".yaml") for file in load_mappings(directory).files]
