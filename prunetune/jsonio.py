"""JSON and JSONL files: byte-stable writing, and reading that names the file (and line) of what is wrong."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from prunetune.config import PrunetuneError


@contextmanager
def atomic_text(path: str | Path) -> Iterator[TextIO]:
    """A text file written whole or not at all: a temporary file beside it, renamed over it once complete.

    A kill or a full disk mid-write leaves the old file (or none), never a torn one; an OSError is one line."""
    path = Path(path)
    if path.is_dir():
        raise PrunetuneError(f"{path}: is a directory, not a file: give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise PrunetuneError(f"{path}: cannot be written ({err.strerror or err}); check the folder") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # as open() would create it
        os.replace(temporary, path)
    except OSError as err:
        Path(temporary).unlink(missing_ok=True)
        raise PrunetuneError(
            f"{path}: writing it failed ({err.strerror or err}); nothing was changed: free disk space or fix the "
            "folder's permissions, then rerun"
        ) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: str | Path, flag: str) -> Path:
    """Refuse an output path before any work is spent on what goes there: a folder, or a place not writable."""
    path = Path(path)
    if path.is_dir():
        raise PrunetuneError(f"{flag} {path}: is a directory; give a file path")
    try:  # a trial file where the output will go: only the filesystem knows (a read-only mount, /proc, quotas)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise PrunetuneError(f"{flag} {path}: cannot be written there ({err.strerror or err})") from None
    return path


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Byte-stable JSONL: the same records always give the same file (written atomically)."""
    with atomic_text(path) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


def write_json(path: str | Path, payload: Any) -> None:
    """Indented JSON, written atomically."""
    with atomic_text(path) as out:
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


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
