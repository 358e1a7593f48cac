"""The corpus: the data contract of an article, and reading it from a JSONL file or a hub dataset, line by line."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prunetune.config import PrunetuneError
from prunetune.params import DataParams

ARTICLE_FIELDS: dict[str, type] = {
    "title": str,
    "date": str,
    "type": str,
    "summary": str,
    "tags": list,
    "url": str,
    "content": str,
}


@dataclass
class LoadResult:
    articles: list[dict[str, Any]]
    lines: int = 0
    blank_lines: int = 0
    invalid: list[dict[str, Any]] = field(default_factory=list)  # {"line", "problem"}, on_error=skip


def validate_article(record: Any, known_types: list[str]) -> str | None:
    """The first problem with one parsed line, or None when it satisfies the data contract."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for name, kind in ARTICLE_FIELDS.items():
        if name not in record:
            return f"missing field '{name}'"
        if not isinstance(record[name], kind):
            return f"field '{name}' must be a {kind.__name__}, got {type(record[name]).__name__}"
    for name in ("title", "content", "type"):
        if not record[name].strip():
            return f"field '{name}' is empty"
    try:
        datetime.strptime(record["date"], "%d.%m.%Y")
    except ValueError:
        return f"field 'date' must be DD.MM.YYYY, got {record['date']!r}"
    if record["type"] not in known_types:
        return f"unknown type {record['type']!r} (known: {', '.join(known_types)}; add it to data.types)"
    for tag in record["tags"]:
        if not isinstance(tag, str) or not tag.strip():
            return f"field 'tags' must hold non-empty strings, got {tag!r}"
        if "|" in tag:
            return f"tag {tag!r} contains '|', the tag separator"
    return None


def read_articles(path: str | Path, known_types: list[str], on_error: str = "fail") -> LoadResult:
    """Read a JSONL corpus; on_error='fail' stops at the first bad line, 'skip' drops and records it."""
    if on_error not in ("fail", "skip"):
        raise PrunetuneError(f"params.yaml: data.on_error must be 'fail' or 'skip', got {on_error!r}")
    path = Path(path)
    if path.is_dir():
        raise PrunetuneError(f"{path}: is a directory; data.source must name a JSONL file")
    if not path.is_file():
        raise PrunetuneError(f"{path}: corpus file not found (data.source)")
    raw_lines = path.read_bytes().split(b"\n")
    if raw_lines and not raw_lines[-1]:
        raw_lines.pop()  # the newline that ends the file
    result = LoadResult(articles=[], lines=len(raw_lines))
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            result.blank_lines += 1
            continue
        problem = None
        try:
            record = json.loads(raw.decode("utf-8"))
            problem = validate_article(record, known_types)
        except UnicodeDecodeError as err:
            problem = f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at position {err.start})"
        except json.JSONDecodeError as err:
            problem = f"malformed JSON ({err.msg} at column {err.colno})"
        if problem is None:
            result.articles.append({**record, "line": number})
        elif on_error == "fail":
            raise PrunetuneError(f"{path}:{number}: {problem} (fix the line, or set data.on_error: skip)")
        else:
            result.invalid.append({"line": number, "problem": problem})
    return result


def _hub_offline_mode() -> bool:
    flags = (os.environ.get(name, "").strip().lower() for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(flag in ("1", "true", "yes", "on") for flag in flags)


def _hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached, or None: `datasets` itself retries for half a minute before saying so."""
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"{host}:{port} unreachable ({err.strerror or err})"
    return None


def read_hub_articles(spec: str, known_types: list[str], on_error: str = "fail") -> tuple[LoadResult, str]:
    """Load data.hub_dataset ('owner/name' or 'owner/name@revision', all splits) and validate it like a JSONL file.

    Returns the articles and the source as recorded in the report, pinned to the commit the hub resolved.
    """
    if on_error not in ("fail", "skip"):
        raise PrunetuneError(f"params.yaml: data.on_error must be 'fail' or 'skip', got {on_error!r}")
    name, _, revision = spec.partition("@")
    what = f"params.yaml: data.hub_dataset {spec!r}"
    offline = _hub_offline_mode()
    if not offline and (reason := _hub_unreachable()):
        raise PrunetuneError(
            f"{what}: the Hugging Face hub is not reachable ({reason}); go online, set HF_HUB_OFFLINE=1 to use "
            "a cached copy, or collect a local JSONL (prunetune collect) and set data.source to it"
        )
    try:
        if not offline:
            from huggingface_hub import HfApi

            revision = HfApi().dataset_info(name, revision=revision or None).sha or revision
        from datasets import load_dataset

        loaded = load_dataset(name, revision=revision or None)
    except Exception as err:  # whatever went wrong (network, id, revision, format): one line naming the param
        first_line = (str(err).strip().splitlines() or [""])[0][:300]
        raise PrunetuneError(f"{what}: could not load it ({type(err).__name__}: {first_line})") from None
    source = f"hf:{name}" + (f"@{revision}" if revision else "")
    splits = [loaded[split] for split in sorted(loaded)] if hasattr(loaded, "keys") else [loaded]
    result = LoadResult(articles=[])
    for split in splits:
        for row in split:
            result.lines += 1
            problem = validate_article(dict(row), known_types)
            if problem is None:
                result.articles.append({**row, "line": result.lines})
            elif on_error == "fail":
                raise PrunetuneError(
                    f"{source} row {result.lines}: {problem} (fix the dataset, or set data.on_error: skip)"
                )
            else:
                result.invalid.append({"line": result.lines, "problem": problem})
    return result, source


def load_corpus(cfg: DataParams) -> tuple[LoadResult, str]:
    """The articles of data.hub_dataset when set, else of the JSONL file data.source, and where they came from."""
    on_error = cfg.on_error
    if cfg.hub_dataset:
        return read_hub_articles(cfg.hub_dataset, cfg.types, on_error)
    return read_articles(cfg.source, cfg.types, on_error), str(cfg.source)
