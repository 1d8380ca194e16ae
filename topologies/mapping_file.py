"""One flow mapping file read into its pydantic model; a wrong file names itself in the error.

:class:`OneFileMappings` answers ``stream-app mappings check|preview`` (``MappingsTool``) for a
flow whose rules are such a file, so a wrong file shows before a worker starts with it.
:class:`ReloadsMapping` gives such a flow ``reload_mappings()``, the console's live reload
(docs/adr/0037).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["load_model", "summary", "OneFileMappings", "ReloadsMapping"]

M = TypeVar("M", bound=BaseModel)


def load_model(path: Path, model: type[M]) -> M:
    try:
        return model.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg'].removeprefix('Value error, ')}"
                    for e in exc.errors()]
        raise ValueError(f"{path}: {'; '.join(problems)}") from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def summary(mapping: BaseModel) -> list[str]:
    """One line per setting: its value, or how many entries a list or table has."""
    lines = []
    for name, value in mapping:
        shown = f"{len(value)} entries" if isinstance(value, (list, tuple, dict)) else repr(value)
        lines.append(f"{name}: {shown}")
    return lines


class OneFileMappings(Generic[M]):
    """``check`` reads ``<directory>/<name>.yaml`` into ``model`` and says what it holds;
    ``preview`` runs ``preview(mapping, record_file)`` when the flow has one."""

    def __init__(self, name: str, model: type[M], preview: Callable[[M, Path], str] | None = None) -> None:
        self.name, self.model, self._preview = name, model, preview

    def _load(self, directory: Path) -> M:
        return load_model(directory / f"{self.name}.yaml", self.model)

    def check(self, directory: Path) -> str:
        mapping = self._load(directory)
        return "\n".join([f"ok: {directory / f'{self.name}.yaml'}", *(f"  {line}" for line in summary(mapping))])

    def names(self, directory: Path) -> list[str]:
        return [self.name]

    def preview(self, directory: Path, name: str, record_file: str) -> str:
        if self._preview is None:
            raise ValueError(f"{name}: this flow has no preview; `stream-app mappings check` validates its file")
        return self._preview(self._load(directory), Path(record_file))


class ReloadsMapping:
    """``reload_mappings()`` for a flow whose rules are one file held in ``self.mapping``: the
    file is read again and validated first; a wrong file raises ValueError (file and fields
    named) and the mapping in use stays. Every stage reads ``self.mapping`` per event, so the
    new one applies from the next event on.

    A flow names its loader and shipped folder in ``mapping_source``, and in
    ``fixed_at_start`` the settings it took when the worker started (a timer's interval):
    a reload that changes one is refused, as it would not take effect before a restart.
    ``refuse_reload`` may add its own reasons; ``use_mapping`` may rebuild what derives from it."""

    ctx: Any
    mapping: Any
    #: (the flow's ``load_mapping(directory)``, its shipped mappings folder)
    mapping_source: ClassVar[tuple[Callable[[Path], Any], Path]]
    fixed_at_start: ClassVar[tuple[str, ...]] = ()

    def refuse_reload(self, mapping: Any) -> list[str]:
        return []

    def use_mapping(self, mapping: Any) -> None:
        self.mapping = mapping

    def reload_mappings(self) -> str:
        load, shipped = self.mapping_source
        directory = self.ctx.mappings_dir(shipped)
        mapping = load(directory)
        reasons = [f"{name} is taken when the worker starts (now {getattr(self.mapping, name)!r}, "
                   f"the file says {getattr(mapping, name)!r})"
                   for name in self.fixed_at_start if getattr(mapping, name) != getattr(self.mapping, name)]
        reasons += self.refuse_reload(mapping)
        if reasons:
            raise ValueError(f"{directory}: kept the mapping in use: {'; '.join(reasons)}; restart the workers")
        self.use_mapping(mapping)
        return f"{directory}: " + ", ".join(summary(mapping))
