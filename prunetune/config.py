"""params.yaml access, parameter checks and the one-line error every stage ends with on bad input."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"


class PrunetuneError(Exception):
    """Bad input or params: the message names the file, item or param and what to do."""


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise PrunetuneError(f"{path}: not found; run the stage from the repository root")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PrunetuneError(f"{path}: not valid YAML ({err.__class__.__name__}: {err})") from None
    if not isinstance(params, dict):
        raise PrunetuneError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if not isinstance(value, dict):
        raise PrunetuneError(f"params.yaml: section '{name}' is missing or not a mapping")
    return value


def require(condition: bool, param: str, problem: str) -> None:
    """Fail with a message naming the param, before any work is spent."""
    if not condition:
        raise PrunetuneError(f"params.yaml: {param} {problem}")


def require_int(cfg: dict[str, Any], key: str, prefix: str, minimum: int | None = None) -> int:
    value = cfg.get(key)
    require(
        isinstance(value, int) and not isinstance(value, bool),
        f"{prefix}.{key}",
        f"must be an integer, got {value!r}",
    )
    if minimum is not None:
        require(value >= minimum, f"{prefix}.{key}", f"must be >= {minimum}, got {value}")
    return value


def require_fraction(cfg: dict[str, Any], key: str, prefix: str) -> float:
    value = cfg.get(key)
    require(
        isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1,
        f"{prefix}.{key}",
        f"must be a number in [0, 1), got {value!r}",
    )
    return float(value)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; bad input ends in one line on stderr and exit status 1, not a traceback.

    With PRUNETUNE_VOCAB_GUARD set, main runs under prunetune.memguard's check on full-vocabulary tensors."""
    try:
        if os.environ.get("PRUNETUNE_VOCAB_GUARD"):
            from prunetune.memguard import guard_from_env  # torch: only when asked for

            with guard_from_env():
                main()
        else:
            main()
    except PrunetuneError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
