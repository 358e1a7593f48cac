"""Polite HTTP: one GET at a time, a delay apart, with an identifying user agent, a timeout on every request and
backoff that honours Retry-After on timeouts, dropped connections, 429 and 5xx; a refused connection fails at once.

The retry loop is hand-written rather than tenacity's: it is 30 lines either way, and Retry-After (seconds or an
HTTP date), the max_wait cut-off and the injectable sleep the tests use would each be a custom tenacity hook."""

from __future__ import annotations

import email.utils
import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prunetune.config import PrunetuneError

MAX_RESPONSE_BYTES = 10_000_000
NOT_FOUND = (404, 410)


@dataclass(frozen=True)
class FetchSettings:
    """The client's knobs and their defaults, in one place (the collect command's options default to these)."""

    delay: float = 1.5  # seconds between requests
    timeout: float = 20.0  # seconds per request, the whole body included
    retries: int = 4  # per request, with backoff
    backoff: float = 2.0  # the first wait; it doubles with every retry
    max_wait: float = 120.0  # a longer Retry-After stops the run instead of hanging


DEFAULTS = FetchSettings()


def user_agent() -> str:
    """Who is asking, so the site can tell (and reach) the collector instead of seeing an anonymous script."""
    try:
        own = version("prunetune")
    except PackageNotFoundError:
        own = "dev"
    return f"prunetune/{own} (BMW PressClub research-corpus collector; one request at a time; Python urllib)"


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
        delay: float = DEFAULTS.delay,
        timeout: float = DEFAULTS.timeout,
        retries: int = DEFAULTS.retries,
        backoff: float = DEFAULTS.backoff,
        max_wait: float = DEFAULTS.max_wait,
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
