"""BMW PressClub collector: listing pages, then detail pages, appended as data-contract articles to a JSONL file.

Polite (politehttp: a delay between requests, an identifying user agent, backoff that honours Retry-After),
bounded (every request has a timeout, every failure a retry limit) and resumable (each article is written whole and
flushed; URLs already in the output are skipped).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prunetune.config import PrunetuneError
from prunetune.corpus import validate_article
from prunetune.politehttp import DEFAULTS, NOT_FOUND, FetchError, PoliteClient
from prunetune.pressclub import DEFAULT_BASE_URL, listing_url, parse_detail, parse_listing

__all__ = ["DEFAULT_BASE_URL", "FetchError", "collect_articles", "open_output", "parse_detail", "parse_listing"]


# ---------------------------------------------------------------- the output file


def _article_url(raw: bytes, path: Path, number: int) -> str:
    """The url of one JSONL line of `path`; anything but an article line is one error naming file and line."""
    try:
        record = json.loads(raw)
        url = record["url"]
        if not isinstance(url, str):
            raise TypeError("'url' is not a string")
    except (ValueError, KeyError, TypeError) as err:
        problem = f"{type(err).__name__}: {err}"
        raise PrunetuneError(
            f"{path}:{number}: not an article line ({problem}); fix it or choose another --out"
        ) from None
    return url


def _torn_object(raw: bytes) -> bool:
    """Whether a last line is the start of a JSON object cut short (what an interrupted append leaves)."""
    if not raw.lstrip().startswith(b"{"):
        return False
    try:
        json.loads(raw)
    except ValueError:
        return True
    return False


def open_output(path: Path) -> tuple[set[str], int, bool]:
    """The URLs already in `path` and their count; a torn last line (an interrupted write) is cut off first."""
    if path.is_dir():
        raise PrunetuneError(f"{path}: is a directory; --out must be a JSONL file")
    if not path.exists():
        return set(), 0, False
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()
    urls: set[str] = set()
    records = 0
    for number, raw in enumerate(lines, start=1):  # every whole line checked before the file is touched
        if not raw.strip():
            continue
        urls.add(_article_url(raw, path, number))
        records += 1
    repaired = False
    if tail.strip():
        try:
            urls.add(_article_url(tail, path, len(lines) + 1))
            records += 1
            with path.open("ab") as sink:  # a whole last line without its newline: complete it
                sink.write(b"\n")
        except PrunetuneError:
            if not _torn_object(tail):
                raise
            with path.open("r+b") as sink:  # a torn last line (an interrupted write): cut it off
                sink.truncate(len(data) - len(tail))
            repaired = True
    return urls, records, repaired


# ---------------------------------------------------------------- the walk


@dataclass
class CollectReport:
    out: str
    existing: int = 0  # articles in the output before this run
    total: int = 0  # articles in the output after it
    pages: int = 0  # listing pages read
    listed: int = 0  # distinct listing entries looked at
    appended: int = 0
    already_present: int = 0  # their URL was already in the output: skipped, not fetched
    repeated: int = 0  # shown again on a later listing page
    dropped: Counter = field(default_factory=Counter)  # reason -> count; nothing is dropped silently
    invalid: list[dict[str, str]] = field(default_factory=list)  # {"url", "problem"} for dropped["invalid"]
    types: Counter = field(default_factory=Counter)  # of the articles appended
    repaired_partial_line: bool = False
    requests: int = 0
    retries: int = 0
    stop: str = ""

    def summary(self) -> str:
        dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.dropped.items())) or "none"
        repaired = "; cut off a partial last line left by an interrupted run" if self.repaired_partial_line else ""
        return (
            f"collect: {self.appended} new articles appended to {self.out} ({self.total} in all); "
            f"{self.pages} listing pages, {self.listed} entries, {self.already_present} already there, "
            f"{self.repeated} repeated; dropped: {dropped}; {self.requests} requests ({self.retries} retries); "
            f"stopped: {self.stop}{repaired}"
        )


def _progress(total: int, initial: int, enabled: bool | None) -> Any:
    from tqdm import tqdm

    # enabled=None: a bar on a terminal, nothing in a log file
    return tqdm(
        total=total, initial=initial, unit="article", desc="collect", disable=None if enabled is None else not enabled
    )


def collect_articles(
    out: str | Path,
    limit: int,
    base_url: str = DEFAULT_BASE_URL,
    *,
    delay: float = DEFAULTS.delay,
    details: bool = True,
    timeout: float = DEFAULTS.timeout,
    retries: int = DEFAULTS.retries,
    backoff: float = DEFAULTS.backoff,
    max_wait: float = DEFAULTS.max_wait,
    progress: bool | None = False,
    sleep: Callable[[float], None] = time.sleep,
) -> CollectReport:
    """Walk the listing until `out` holds `limit` articles or the listing ends, appending each new article whole."""
    _check_options(limit, base_url, delay, timeout, retries, backoff, max_wait)
    base_url = base_url.rstrip("/")
    out = Path(out)
    known, existing, repaired = open_output(out)
    report = CollectReport(out=str(out), existing=existing, total=existing, repaired_partial_line=repaired)
    client = PoliteClient(delay, timeout, retries, backoff, max_wait, sleep)
    out.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    try:
        with (
            out.open("a", encoding="utf-8", newline="\n") as sink,
            _progress(limit, min(existing, limit), progress) as bar,
        ):
            page = 1
            while not report.stop:
                if report.total >= limit:
                    report.stop = f"{out} holds {report.total} articles (--limit {limit})"
                    break
                response = client.get(listing_url(base_url, page))
                if response.status in NOT_FOUND:
                    report.stop = f"listing page {page} not found (HTTP {response.status}): end of the listing"
                    break
                entries, unusable = parse_listing(response.text, response.url)
                report.pages += 1
                report.dropped.update(unusable)
                fresh = 0
                for entry in entries:
                    if entry["url"] in seen:
                        report.repeated += 1
                        continue
                    seen.add(entry["url"])
                    fresh += 1
                    if report.total >= limit:
                        continue  # counted as seen, but neither fetched nor written
                    report.listed += 1
                    if entry["url"] in known:
                        report.already_present += 1
                    elif (article := _complete(entry, details, client, report)) is not None:
                        sink.write(json.dumps(article, ensure_ascii=False) + "\n")
                        sink.flush()
                        os.fsync(sink.fileno())
                        known.add(article["url"])
                        report.appended += 1
                        report.total += 1
                        report.types[article["type"]] += 1
                        bar.update(1)
                    bar.set_postfix(
                        page=page,
                        new=report.appended,
                        skipped=report.already_present,
                        dropped=sum(report.dropped.values()),
                    )
                if not fresh:
                    report.stop = f"listing page {page} brings no new article"
                page += 1
    except FetchError as err:
        raise FetchError(
            f"{err}. Stopped with {report.total} articles in {out} ({report.appended} new); "
            "run the same command again to resume"
        ) from None
    finally:
        report.requests, report.retries = client.requests, client.retried
    return report


def _complete(entry: dict[str, Any], details: bool, client: PoliteClient, report: CollectReport) -> dict | None:
    """The entry with its content (the detail page's text, or the summary with --no-details); None when dropped."""
    # any type passes here: which types to keep is the split stage's choice (data.types, data.exclude_types)
    if problem := validate_article({**entry, "content": "(not fetched yet)"}, [entry["type"]]):
        return _invalid(entry, problem, report)  # bad listing data: not worth a request for the detail page
    if details:
        response = client.get(entry["url"])
        if response.status in NOT_FOUND:
            report.dropped["detail_not_found"] += 1
            return None
        content = parse_detail(response.text)
        if content is None:
            # Not kept with the summary as content: summarization would become copying its input, and the
            # title and tag tasks would be judged on a summary instead of an article.
            report.dropped["no_article_text"] += 1
            return None
        if not content:
            report.dropped["empty_article_text"] += 1
            return None
    else:
        content = entry["summary"]
    article = {**entry, "content": content}
    if problem := validate_article(article, [article["type"]]):
        return _invalid(entry, problem, report)
    return article


def _invalid(entry: dict[str, Any], problem: str, report: CollectReport) -> None:
    report.dropped["invalid"] += 1
    report.invalid.append({"url": entry["url"], "problem": problem})


def _check_options(
    limit: int, base_url: str, delay: float, timeout: float, retries: int, backoff: float, max_wait: float
) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise PrunetuneError(f"--limit must be a positive number of articles, got {limit!r}")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PrunetuneError(f"--base-url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {base_url!r}")
    for name, value, low in (("--delay", delay, 0), ("--backoff", backoff, 0), ("--max-wait", max_wait, 0)):
        if not value >= low:
            raise PrunetuneError(f"{name} must be >= {low} seconds, got {value!r}")
    for name, value in (("--delay", delay), ("--timeout", timeout), ("--backoff", backoff), ("--max-wait", max_wait)):
        if not math.isfinite(value):
            raise PrunetuneError(f"{name} must be a finite number of seconds, got {value!r}")
    if not timeout > 0:
        raise PrunetuneError(f"--timeout must be > 0 seconds, got {timeout!r}")
    if not isinstance(retries, int) or retries < 0:
        raise PrunetuneError(f"--retries must be a whole number >= 0, got {retries!r}")


def unknown_types_note(report: CollectReport, params_path: str | Path = "params.yaml") -> str | None:
    """A one-line hint when the run collected types that params.yaml's data.types lacks (split would stop on them)."""
    from prunetune.config import load_params

    try:
        known = load_params(params_path).get("data", {}).get("types") or []
    except (PrunetuneError, AttributeError):
        return None
    unknown = {t: n for t, n in sorted(report.types.items()) if t not in known}
    if not unknown:
        return None
    listed = ", ".join(f"{t!r} ({n})" for t, n in unknown.items())
    return f"note: types not in {params_path} data.types: {listed}; add them there (and to exclude_types if unwanted)"
