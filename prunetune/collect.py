"""BMW PressClub collector: listing pages, then detail pages, appended as data-contract articles to a JSONL file.

Polite (a delay between requests, an identifying user agent, backoff that honours Retry-After), bounded (every
request has a timeout, every failure a retry limit) and resumable (each article is written whole and flushed;
URLs already in the output are skipped).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from prunetune.config import PrunetuneError
from prunetune.data import validate_article

DEFAULT_BASE_URL = "https://www.press.bmwgroup.com"
LISTING_PATH = "/global/article"
DETAIL_MARKER = "/article/detail/"
MAX_RESPONSE_BYTES = 10_000_000
DEFAULT_DELAY = 1.5
NOT_FOUND = (404, 410)


def user_agent() -> str:
    """Who is asking, so the site can tell (and reach) the collector instead of seeing an anonymous script."""
    try:
        own = version("prunetune")
    except PackageNotFoundError:
        own = "dev"
    return f"prunetune/{own} (BMW PressClub research-corpus collector; one request at a time; Python urllib)"


# ---------------------------------------------------------------- a small, forgiving HTML tree

VOID_TAGS = frozenset("area base br col embed hr img input link meta param source track wbr".split())
CLOSES_P = frozenset(
    "address article aside blockquote details div dl fieldset figure footer form h1 h2 h3 h4 h5 h6 header hr "
    "main nav ol p pre section table ul".split()
)
P_SCOPE_LIMITS = frozenset("applet button caption html marquee object table td th template".split())
MAX_DEPTH = 512  # as browsers cap nesting: every scan of the open elements stays short
NO_TEXT_TAGS = frozenset({"script", "style", "button", "noscript", "template", "svg"})


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    def has_class(self, name: str) -> bool:
        return name in self.attrs.get("class", "").split()

    def descendants(self, prune: frozenset[str] = frozenset()) -> Iterator[Element]:
        """Elements below this one in document order, not entering those whose tag is in `prune` (iterative)."""
        stack = [child for child in reversed(self.children) if isinstance(child, Element)]
        while stack:
            element = stack.pop()
            yield element
            if element.tag not in prune:
                stack.extend(child for child in reversed(element.children) if isinstance(child, Element))

    def find_all(
        self, tag: str, cls: str | None = None, id: str | None = None, prune: frozenset[str] = frozenset()
    ) -> list[Element]:
        return [
            e
            for e in self.descendants(prune)
            if e.tag == tag and (cls is None or e.has_class(cls)) and (id is None or e.attrs.get("id") == id)
        ]

    def text(self, skip: frozenset[str] = frozenset()) -> str:
        """Visible text: scripts, styles and buttons dropped, runs of spaces collapsed, <br> kept as a line break."""
        skip = NO_TEXT_TAGS | skip
        pieces: list[str] = []
        stack: list[Element | str] = list(reversed(self.children))
        while stack:
            node = stack.pop()
            if isinstance(node, str):
                pieces.append(" ".join(node.split("\n")))  # a newline in the source is a space; <br> breaks lines
            elif node.tag == "br":
                pieces.append("\n")
            elif node.tag not in skip:
                stack.extend(reversed(node.children))
        lines = (" ".join(line.split()) for line in "".join(pieces).split("\n"))
        return "\n".join(line for line in lines if line)


class _TreeBuilder(HTMLParser):
    """html.parser events to an Element tree, closing tags the way browsers do for the cases that matter here."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]
        self.open: Counter = (
            Counter()
        )  # tag -> how many are open: stray end tags cost nothing, deep nesting stays linear

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in CLOSES_P and self.open["p"]:
            self._close_open_p()
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID_TAGS and len(self.stack) < MAX_DEPTH:  # deeper: its content goes to its parent
            self.stack.append(element)
            self.open[tag] += 1

    def handle_endtag(self, tag: str) -> None:
        if self.open[tag]:  # a stray end tag (nothing open to close) is ignored, as browsers do
            self._pop_to(next(i for i in range(len(self.stack) - 1, 0, -1) if self.stack[i].tag == tag))

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)

    def _pop_to(self, index: int) -> None:
        for element in self.stack[index:]:
            self.open[element.tag] -= 1
        del self.stack[index:]

    def _close_open_p(self) -> None:
        for index in range(len(self.stack) - 1, 0, -1):
            tag = self.stack[index].tag
            if tag == "p":
                self._pop_to(index)
                return
            if tag in P_SCOPE_LIMITS:
                return


def parse_html(text: str) -> Element:
    """The document tree of any HTML, however broken (html.parser never rejects input)."""
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


# ---------------------------------------------------------------- the two page kinds


OWN = frozenset({"article"})  # an entry nested in another (an unclosed <article>) is its own entry, not part of it


def _first_text(node: Element, tag: str, cls: str) -> str:
    found = node.find_all(tag, cls=cls, prune=OWN)
    return found[0].text(OWN) if found else ""


def parse_listing(html: str, page_url: str) -> tuple[list[dict[str, Any]], Counter]:
    """The entries of one listing page (articles without content yet) and a count of the entries unusable."""
    entries: list[dict[str, Any]] = []
    unusable: Counter = Counter()
    for node in parse_html(html).find_all("article", cls="newsfeed"):
        links = [a for h3 in node.find_all("h3", prune=OWN) for a in h3.find_all("a") if a.attrs.get("href")]
        if not links:
            unusable["listing_entry_without_link"] += 1
            continue
        url = urldefrag(urljoin(page_url, links[0].attrs["href"].strip()))[0]
        if DETAIL_MARKER not in urlsplit(url).path:
            unusable["listing_entry_not_an_article"] += 1
            continue
        tags = [
            tag.text(OWN)
            for box in node.find_all("div", cls="tagging-info", prune=OWN)
            for tag in box.find_all("div", cls="tag", prune=OWN)
        ]
        entries.append(
            {
                "title": links[0].text(OWN),
                "date": _first_text(node, "span", "date"),
                "type": _first_text(node, "span", "category"),
                "summary": _first_text(node, "p", "serif"),
                "tags": [tag for tag in tags if tag],
                "url": url,
            }
        )
    return entries, unusable


def parse_detail(html: str) -> str | None:
    """The article body (the <p> texts inside div#article-text, one paragraph each); None when there is no such div."""
    bodies = parse_html(html).find_all("div", id="article-text")
    if not bodies:
        return None
    paragraphs = (p.text() for p in bodies[0].find_all("p", prune=NO_TEXT_TAGS))
    return "\n\n".join(p for p in paragraphs if p)


def listing_url(base_url: str, page: int) -> str:
    return f"{base_url}{LISTING_PATH}" + (f"?page={page}" if page > 1 else "")


# ---------------------------------------------------------------- polite HTTP


class FetchError(PrunetuneError):
    """A request that failed for good: retries used up, a Retry-After too long, or a status not worth retrying."""


@dataclass
class Response:
    status: int
    text: str
    url: str


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds to wait (it is either a number of seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class PoliteClient:
    """GET one page at a time, `delay` s apart; timeouts, dropped connections, 429 and 5xx are retried with backoff;
    a refused connection fails at once."""

    def __init__(
        self,
        delay: float = DEFAULT_DELAY,
        timeout: float = 20.0,
        retries: int = 4,
        backoff: float = 2.0,
        max_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.delay, self.timeout, self.retries, self.backoff, self.max_wait = delay, timeout, retries, backoff, max_wait
        self.sleep = sleep
        self.headers = {"User-Agent": user_agent(), "Accept": "text/html", "Accept-Language": "en"}
        self.requests = 0
        self.retried = 0
        self._last: float | None = None

    def get(self, url: str) -> Response:
        """The page at `url` (2xx, or 404/410 for the caller to judge); FetchError once retrying is pointless."""
        problem = ""
        for attempt in range(self.retries + 1):
            retry_after = None
            try:
                status, headers, body, final_url = self._fetch(url)
            except TimeoutError:
                problem = f"timed out after {self.timeout:g} s"
            except urllib.error.URLError as err:
                reason = err.reason
                if isinstance(reason, ConnectionRefusedError):  # nothing listens there: waiting will not help
                    raise FetchError(f"{url}: {reason} (is --base-url right, and the site up?)") from None
                problem = f"timed out after {self.timeout:g} s" if isinstance(reason, TimeoutError) else str(reason)
            except ConnectionRefusedError as err:
                raise FetchError(f"{url}: {err} (is --base-url right, and the site up?)") from None
            except (OSError, http.client.HTTPException) as err:
                problem = f"{type(err).__name__}: {err}".rstrip(": ")
            else:
                if status < 300 or status in NOT_FOUND:
                    return Response(status, _decode(body, headers), final_url)  # links resolve against it
                if status != 429 and status < 500:
                    raise FetchError(f"{url}: HTTP {status}, not a failure that retrying fixes")
                problem, retry_after = f"HTTP {status}", retry_after_seconds(headers.get("Retry-After"))
            if attempt == self.retries:
                break
            wait = retry_after if retry_after is not None else self.backoff * 2**attempt
            if wait > self.max_wait:
                raise FetchError(f"{url}: {problem} and the server asks to wait {wait:g} s; run again later")
            self.retried += 1
            self.sleep(wait)
        attempts = self.retries + 1
        raise FetchError(f"{url}: {problem} ({attempts} attempt{'s' * (attempts > 1)}), giving up")

    def _fetch(self, url: str) -> tuple[int, Any, bytes, str]:
        if self._last is not None:
            remaining = self._last + self.delay - time.monotonic()
            if remaining > 0:
                self.sleep(remaining)
        self.requests += 1
        request = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.headers, self._read(response), response.url or url
        except urllib.error.HTTPError as err:
            err.close()
            return err.code, err.headers, b"", url
        finally:
            self._last = time.monotonic()

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        """The body, within `timeout` s in all: the socket timeout alone lets a trickling server stall for ever."""
        deadline = time.monotonic() + self.timeout
        chunks, size = [], 0
        while chunk := response.read1(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise http.client.HTTPException(f"response larger than {MAX_RESPONSE_BYTES} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError
        return b"".join(chunks)


def _decode(body: bytes, headers: Any) -> str:
    charset = headers.get_content_charset() if headers is not None else None
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


# ---------------------------------------------------------------- the output file


def open_output(path: Path) -> tuple[set[str], int, bool]:
    """The URLs already in `path` and their count; a torn last line (an interrupted write) is cut off first."""
    if path.is_dir():
        raise PrunetuneError(f"{path}: is a directory; --out must be a JSONL file")
    if not path.exists():
        return set(), 0, False
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail, repaired = lines.pop(), False
    if tail.strip():
        try:
            json.loads(tail)
            lines.append(tail)
            with path.open("ab") as sink:  # a whole last line without its newline: complete it
                sink.write(b"\n")
        except ValueError:
            with path.open("r+b") as sink:
                sink.truncate(len(data) - len(tail))
            repaired = True
    urls: set[str] = set()
    records = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
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
        urls.add(url)
        records += 1
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
    delay: float = DEFAULT_DELAY,
    details: bool = True,
    timeout: float = 20.0,
    retries: int = 4,
    backoff: float = 2.0,
    max_wait: float = 120.0,
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
