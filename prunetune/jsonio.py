"""JSON and JSONL files: byte-stable writing, and reading that names the file (and line) of what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prunetune.config import PrunetuneError


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Byte-stable JSONL: the same records always give the same file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


MISSING_OUTPUT = "run the stage that writes it first (dvc repro)"
DAMAGED_OUTPUT = "rerun the stage that writes it (dvc repro, or dvc checkout to restore it)"


def _text(path: Path, missing: str) -> str:
    if path.is_dir():
        raise PrunetuneError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise PrunetuneError(f"{path}: not found; {missing}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise PrunetuneError(f"{path}: not valid UTF-8 (byte {err.start})") from None


def read_jsonl(path: str | Path, missing: str = MISSING_OUTPUT, damaged: str = DAMAGED_OUTPUT) -> list[dict[str, Any]]:
    """Every JSON line of a file; a missing file or a bad line is one error naming the file (and line)."""
    path = Path(path)
    records = []
    for number, line in enumerate(_text(path, missing).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise PrunetuneError(
                f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno}), a truncated or edited line; "
                f"{damaged}"
            ) from None
    return records


def read_json(path: str | Path, missing: str = MISSING_OUTPUT, damaged: str = DAMAGED_OUTPUT) -> Any:
    path = Path(path)
    try:
        return json.loads(_text(path, missing))
    except json.JSONDecodeError as err:
        raise PrunetuneError(
            f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno}); {damaged}"
        ) from None
