"""One flow mapping file read into its pydantic model; a wrong file names itself in the error.

:class:`OneFileMappings` answers ``stream-app mappings check|preview`` (``MappingsTool``) for a
flow whose rules are such a file, so a wrong file shows before a worker starts with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["load_model", "summary", "OneFileMappings"]

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
