"""One flow mapping file read into its pydantic model; a wrong file names itself in the error."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel

__all__ = ["load_model"]

M = TypeVar("M", bound=BaseModel)


def load_model(path: Path, model: type[M]) -> M:
    try:
        return model.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
