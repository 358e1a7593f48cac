"""The PressClub collector against a look-alike site on 127.0.0.1, and the hub data source (offline)."""

import json
import socket
import sys
import threading
import time
import types
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import data_cfg, make_article, write_corpus

import prunetune.collect as collect_module
from prunetune.cli import main as cli_main
from prunetune.collect import collect_articles, open_output, unknown_types_note
from prunetune.config import PrunetuneError
from prunetune.corpus import read_articles
from prunetune.data import prepare_corpus
from prunetune.htmltree import parse_html
from prunetune.politehttp import FetchError, retry_after_seconds
from prunetune.pressclub import parse_detail, parse_listing

FIXTURES = Path(__file__).parent / "fixtures" / "pressclub"
TYPES = ["Press Release", "Press Kit", "Speech", "Fact & Figures"]
SLOW_S = 1.5
FAST = {"delay": 0, "timeout": 0.5, "retries": 2, "backoff": 0.01, "progress": False}
COLLECTED = ["T0400001EN", "T0400002EN", "T0400003EN", "T0400005EN", "T0400006EN", "T0400007EN", "T0400008EN"]


def page(name: str) -> tuple:
    return ("page", name)


class Site:
    """A PressClub look-alike: each route answers with its behaviours in turn, the last one repeating; no route: 404."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []  # (path, user agent) of every request
        self.routes: dict[str, list[tuple]] = {}
        self.reset()

    def reset(self) -> None:
        self.routes = {
            "/global/article": [page("listing_1.html")],
            "/global/article?page=2": [page("listing_2.html")],
            "/global/article?page=3": [page("listing_3_malformed.html")],
            # page 4: no route, so 404 ends the listing
            **{code: [page(f"detail_{code}.html")] for code in COLLECTED + ["T0400004EN"]},
            "T0400005EN": [page("detail_T0400005EN_malformed.html")],
            "T0400006EN": [("status", 503, {}), page("detail_T0400006EN.html")],  # transient
            "T0400007EN": [("slow", SLOW_S, "detail_T0400007EN.html"), page("detail_T0400007EN.html")],
        }

    @staticmethod
    def key(path: str) -> str:
        parts = path.split("/")  # /global/article/detail/CODE/slug?...
        return parts[4] if path.startswith("/global/article/detail/") and len(parts) > 4 else path

    def details_requested(self, since: int = 0) -> list[str]:
        return [self.key(path) for path, _ in self.log[since:] if path.startswith("/global/article/detail/")]

    def listings_requested(self, since: int = 0) -> list[str]:
        return [path for path, _ in self.log[since:] if not path.startswith("/global/article/detail/")]


@pytest.fixture
def site():
    state = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            state.log.append((self.path, self.headers.get("User-Agent", "")))
            behaviours = state.routes.get(state.key(self.path))
            try:
                if not behaviours:
                    self.send_error(404)
                    return
                behaviour = behaviours.pop(0) if len(behaviours) > 1 else behaviours[0]
                if behaviour[0] == "status":
                    self.send_response(behaviour[1])
                    for name, value in behaviour[2].items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.write(b"busy")
                    return
                if behaviour[0] == "slow":
                    time.sleep(behaviour[1])
                body = (FIXTURES / behaviour[-1]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the slow response)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def codes(path: Path) -> list[str]:
    return [record["url"].split("/")[6] for record in lines(path)]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- a full walk


def test_collect_walks_every_page_and_writes_contract_articles(site, tmp_path):
    out = tmp_path / "articles.jsonl"
    start = time.monotonic()
    report = collect_articles(out, 100, site.base_url, **FAST)

    assert codes(out) == COLLECTED  # listing order; the repeat, the text-less page and the bad entries left out
    first = lines(out)[0]
    assert list(first) == ["title", "date", "type", "summary", "tags", "url", "content"]
    assert first == {
        "title": "BMW Group delivers more electrified vehicles than ever",
        "date": "09.01.2025",
        "type": "Press Release",
        "summary": "+++ Deliveries of fully electric vehicles up 13.5 percent +++ "
        "Every fifth new car fully electric +++",
        "tags": ["Finance, Facts, Figures", "Electromobility", "Sales"],
        "url": f"{site.base_url}/global/article/detail/T0400001EN/"
        "bmw-group-delivers-more-electrified-vehicles-than-ever?language=en",
        "content": "Munich. The BMW Group delivered more electrified vehicles in 2024 than in any year before. "
        "Sales of fully electric models rose by 13.5 percent, and every fifth new car handed to a customer was "
        'fully electric.\n\n"Our customers have embraced the Neue Klasse long before it arrives," said the Board '
        "Member responsible for Customer, Brands and Sales.\nThe order bank for the coming year is already well "
        "filled.\n\nDeliveries grew fastest in Europe & the United States, while China remained the largest "
        "single market.",
    }
    by_code = dict(zip(codes(out), lines(out), strict=True))
    assert by_code["T0400002EN"]["title"] == "The new BMW X3: Design & Technology"
    assert by_code["T0400008EN"]["type"] == "Fact & Figures"
    # the malformed listing entry: unquoted attributes, unclosed <b>, <p>, tag <div> and <article>
    assert by_code["T0400007EN"]["title"] == "BMW iX5 Hydrogen fleet completes winter testing"
    assert by_code["T0400007EN"]["summary"] == "Sixty vehicles, minus thirty degrees"
    assert by_code["T0400007EN"]["tags"] == ["Hydrogen", "Testing"]
    # the malformed detail page: unclosed <p>s, uppercase DIV ID, stray end tags, entities
    assert by_code["T0400005EN"]["content"].split("\n\n") == [
        "Nürburgring. Both MINI John Cooper Works cars reached the finish of the 24-hour race on the Nordschleife "
        "after a night of rain",
        "The team changed a gearbox in twelve minutes — a new record for the squad & its mechanics.",
        '"We came to finish, and we finished," said the team principal.',
        "Both cars will return next year with an updated aerodynamics package",
    ]

    assert report.dropped == Counter(no_article_text=1, listing_entry_without_link=1, invalid=1)
    assert report.invalid[0]["url"].split("/")[6] == "T0400009EN" and "DD.MM.YYYY" in report.invalid[0]["problem"]
    assert (report.appended, report.total, report.pages, report.listed, report.repeated) == (7, 7, 3, 9, 1)
    assert report.stop == "listing page 4 not found (HTTP 404): end of the listing"
    assert report.retries == 2  # the 503 and the slow response, each retried once
    assert site.listings_requested() == ["/global/article"] + [f"/global/article?page={n}" for n in (2, 3, 4)]
    # each page once, the 503 and the slow one twice (the failure, then the retry)
    assert Counter(site.details_requested()) == Counter(
        {**dict.fromkeys(COLLECTED, 1), "T0400004EN": 1, "T0400006EN": 2, "T0400007EN": 2}
    )
    assert "T0400009EN" not in site.details_requested()  # invalid listing data: no request for its page
    assert all(agent.startswith("prunetune/") for _, agent in site.log)
    assert "7 new articles appended" in report.summary() and "no_article_text 1" in report.summary()
    assert time.monotonic() - start < SLOW_S + 2  # the slow page was abandoned at the timeout, not waited for


def test_second_run_appends_nothing_and_fetches_no_known_article(site, tmp_path):
    out = tmp_path / "articles.jsonl"
    collect_articles(out, 100, site.base_url, **FAST)
    before, since = out.read_bytes(), len(site.log)
    report = collect_articles(out, 100, site.base_url, **FAST)

    assert out.read_bytes() == before
    assert (report.appended, report.existing, report.already_present) == (0, 7, 7)
    assert site.details_requested(since) == ["T0400004EN"]  # only the dropped one is looked at again


def test_resume_reads_a_large_output_once(site, tmp_path, monkeypatch):
    """The resume check is a set of the URLs already written, read once, not a re-read of the file per article."""
    out = tmp_path / "articles.jsonl"
    earlier = {**make_article(0), "url": ""}
    out.write_text("".join(json.dumps({**earlier, "url": f"https://old.example/{i}"}) + "\n" for i in range(20000)))
    reads = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda path: reads.append(path) or real_read_bytes(path))
    start = time.monotonic()
    report = collect_articles(out, 30000, site.base_url, **FAST)
    assert (report.existing, report.appended, report.total) == (20000, 7, 20007)
    assert [path for path in reads if path == out] == [out] and time.monotonic() - start < 10
    known, records, _ = collect_module.open_output(out)
    assert records == 20007 and len(known) == 20007


def test_limit_counts_the_articles_in_the_file_and_a_larger_limit_continues(site, tmp_path):
    out = tmp_path / "articles.jsonl"
    report = collect_articles(out, 2, site.base_url, **FAST)
    assert codes(out) == COLLECTED[:2]
    assert report.stop == f"{out} holds 2 articles (--limit 2)"
    assert site.listings_requested() == ["/global/article"]  # page 2 never asked for

    since = len(site.log)
    report = collect_articles(out, 5, site.base_url, **FAST)
    assert codes(out) == COLLECTED[:5]
    assert (report.appended, report.already_present, report.total) == (3, 2, 5)
    assert not set(site.details_requested(since)) & set(COLLECTED[:2])


def test_a_page_with_no_new_article_ends_the_walk(site, tmp_path):
    site.routes["/global/article?page=3"] = [page("listing_2.html")]  # a site that repeats its last page
    report = collect_articles(tmp_path / "a.jsonl", 100, site.base_url, **FAST)
    assert report.stop == "listing page 3 brings no new article"
    assert "/global/article?page=4" not in site.listings_requested()
    assert report.repeated == 1 + 4


def test_no_details_takes_the_summary_and_reads_only_listings(site, tmp_path):
    out = tmp_path / "a.jsonl"
    collect_articles(out, 3, site.base_url, details=False, **FAST)
    assert [r["content"] for r in lines(out)] == [r["summary"] for r in lines(out)]
    assert site.details_requested() == []


# ---------------------------------------------------------------- failures, interruptions, resumption


def test_repeated_failure_stops_with_one_line_and_the_rerun_resumes(site, tmp_path):
    clean = tmp_path / "clean.jsonl"
    collect_articles(clean, 100, site.base_url, **FAST)

    site.reset()
    site.routes["T0400005EN"] = [("status", 503, {})]  # down for good, for now
    out = tmp_path / "articles.jsonl"
    with pytest.raises(FetchError) as caught:
        collect_articles(out, 100, site.base_url, **{**FAST, "retries": 1})
    message = str(caught.value)
    assert "\n" not in message and "T0400005EN" in message and "HTTP 503 (2 attempts)" in message
    assert "3 articles in" in message and "run the same command again to resume" in message
    assert codes(out) == COLLECTED[:3]  # everything before the failure is there, whole

    site.reset()
    report = collect_articles(out, 100, site.base_url, **FAST)
    assert (report.existing, report.appended) == (3, 4)
    assert out.read_bytes() == clean.read_bytes()


def test_interrupted_run_loses_nothing_and_resumes(site, tmp_path, monkeypatch):
    clean = tmp_path / "clean.jsonl"
    collect_articles(clean, 100, site.base_url, **FAST)

    site.reset()
    real, calls, on_disk = collect_module.parse_detail, [], []
    out = tmp_path / "articles.jsonl"

    def interrupted_on_third(html):
        calls.append(1)
        if len(calls) == 3:
            on_disk.append(out.read_bytes())  # what a kill -9 here would leave: no close, no cleanup
            raise KeyboardInterrupt  # Ctrl-C while the third article is being read
        return real(html)

    monkeypatch.setattr(collect_module, "parse_detail", interrupted_on_third)
    with pytest.raises(KeyboardInterrupt):
        collect_articles(out, 100, site.base_url, **FAST)
    assert codes(out) == COLLECTED[:2]
    assert on_disk == [b"".join(clean.read_bytes().splitlines(keepends=True)[:2])]  # flushed as written

    monkeypatch.setattr(collect_module, "parse_detail", real)
    collect_articles(out, 100, site.base_url, **FAST)
    assert out.read_bytes() == clean.read_bytes()


def test_a_torn_last_line_is_cut_off_and_its_article_fetched_again(site, tmp_path):
    clean = tmp_path / "clean.jsonl"
    collect_articles(clean, 100, site.base_url, **FAST)
    written = clean.read_bytes().split(b"\n")
    out = tmp_path / "articles.jsonl"
    out.write_bytes(b"\n".join(written[:2]) + b"\n" + written[2][:40])  # killed in the middle of a write

    report = collect_articles(out, 100, site.base_url, **FAST)
    assert report.repaired_partial_line and report.existing == 2
    assert out.read_bytes() == clean.read_bytes()
    assert "cut off a partial last line" in report.summary()


def test_a_whole_last_line_without_newline_is_kept(tmp_path):
    out = tmp_path / "a.jsonl"
    out.write_text(json.dumps(make_article(1)), encoding="utf-8")
    urls, count, repaired = open_output(out)
    assert (count, repaired) == (1, False) and out.read_text().endswith("}\n")
    assert urls == {make_article(1)["url"]}


def test_a_foreign_output_file_is_refused_naming_the_line(tmp_path):
    out = tmp_path / "a.jsonl"
    out.write_text('{"url": "u"}\n["not", "an", "article"]\n{"url": "v"}\n', encoding="utf-8")
    with pytest.raises(PrunetuneError, match=r"a\.jsonl:2: not an article line"):
        open_output(out)


def test_requests_are_spaced_by_the_delay(site, tmp_path):
    waits: list[float] = []
    collect_articles(tmp_path / "a.jsonl", 2, site.base_url, **{**FAST, "delay": 0.25}, sleep=waits.append)
    assert len(site.log) == 3 and len(waits) == 2  # listing, detail, detail: a pause before each but the first
    assert all(0.1 < wait <= 0.25 for wait in waits)


def test_retry_after_is_honoured(site, tmp_path):
    site.routes["/global/article"] = [("status", 429, {"Retry-After": "7"}), page("listing_1.html")]
    waits: list[float] = []
    report = collect_articles(tmp_path / "a.jsonl", 1, site.base_url, **FAST, sleep=waits.append)
    assert report.appended == 1 and 7.0 in waits


def test_a_retry_after_longer_than_max_wait_stops_instead_of_hanging(site, tmp_path):
    site.routes["/global/article"] = [("status", 503, {"Retry-After": "3600"})]
    start = time.monotonic()
    with pytest.raises(FetchError, match="HTTP 503 and the server asks to wait 3600 s; run again later"):
        collect_articles(tmp_path / "a.jsonl", 1, site.base_url, **FAST, max_wait=60)
    assert time.monotonic() - start < 2


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2025, 1, 9, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


def test_a_page_that_stays_slow_stops_the_run_within_the_timeouts(site, tmp_path):
    site.routes["/global/article"] = [("slow", SLOW_S, "listing_1.html")]
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out after 0\.3 s \(2 attempts\), giving up"):
        collect_articles(tmp_path / "a.jsonl", 1, site.base_url, **{**FAST, "timeout": 0.3, "retries": 1})
    assert time.monotonic() - start < 1.5
    assert not (tmp_path / "a.jsonl").read_text()


def test_other_client_errors_are_not_retried(site, tmp_path):
    site.routes["/global/article"] = [("status", 403, {})]
    with pytest.raises(FetchError, match="HTTP 403, not a failure that retrying fixes"):
        collect_articles(tmp_path / "a.jsonl", 1, site.base_url, **FAST)
    assert len(site.log) == 1


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("limit", 0, "--limit must be a positive number"),
        ("base_url", "www.press.bmwgroup.com", "--base-url must be an http"),
        ("delay", -1, "--delay must be >= 0"),
        ("timeout", 0, "--timeout must be > 0"),
        ("retries", -1, "--retries must be a whole number"),
    ],
)
def test_bad_options_are_named(tmp_path, option, value, message):
    kwargs = {"out": tmp_path / "a.jsonl", "limit": 1, "base_url": "http://127.0.0.1:1", **FAST, option: value}
    with pytest.raises(PrunetuneError, match=message):
        collect_articles(**kwargs)


# ---------------------------------------------------------------- the command


def test_cli_collects_and_prints_one_summary(site, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "a.jsonl"
    args = ["collect", "--base-url", site.base_url, "--limit", "3", "--out", str(out), "--delay", "0"]
    cli_main(args + ["--timeout", "5"])
    printed = capsys.readouterr()
    assert printed.out.startswith("collect: 3 new articles appended") and printed.out.count("\n") == 1
    assert len(lines(out)) == 3


def test_cli_unreachable_site_ends_in_one_error_line(tmp_path, capsys):
    base = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(SystemExit) as caught:
        cli_main(["collect", "--base-url", base, "--limit", "1", "--out", str(tmp_path / "a.jsonl"), "--retries", "0"])
    err = capsys.readouterr().err
    assert caught.value.code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {base}/global/article: ") and "refused" in err and "to resume" in err


def test_a_refused_connection_fails_at_once_but_a_timeout_or_5xx_is_retried(site, tmp_path):
    slept = []
    base = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"/global/article: .*refused.*is --base-url right"):
        collect_articles(tmp_path / "a.jsonl", 1, base, **{**FAST, "retries": 4}, sleep=slept.append)
    assert slept == [] and time.monotonic() - started < 5  # no backoff: nothing listens there

    report = collect_articles(tmp_path / "b.jsonl", 100, site.base_url, **FAST, sleep=slept.append)
    assert report.retries == 2 and len(slept) == 2  # the site's 503 and its too-slow answer: each backed off once


def test_unknown_types_are_pointed_out(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  types: [Press Release]\n", encoding="utf-8")
    report = collect_module.CollectReport(out="a.jsonl", types=Counter({"Press Release": 3, "Interview": 2}))
    assert unknown_types_note(report, params) == (
        f"note: types not in {params} data.types: 'Interview' (2); add them there (and to exclude_types if unwanted)"
    )
    assert unknown_types_note(report, tmp_path / "none.yaml") is None


# ---------------------------------------------------------------- the parsers on their own


def test_listing_parser_ignores_script_text_and_non_newsfeed_articles():
    html = (FIXTURES / "listing_1.html").read_text(encoding="utf-8")
    entries, unusable = parse_listing(html, "https://example.org/global/article")
    assert [e["url"].split("/")[6] for e in entries] == ["T0400001EN", "T0400002EN", "T0400003EN"]
    assert not unusable and all(e["url"].startswith("https://example.org/") for e in entries)


def test_detail_parser_keeps_only_paragraphs_of_the_article_text():
    html = (FIXTURES / "detail_T0400001EN.html").read_text(encoding="utf-8")
    content = parse_detail(html)
    for outside in ("Print article", "Download PDF", "Skip to content", "Related articles", "trackParagraph", "italic"):
        assert outside not in content
    assert content.count("\n\n") == 2
    assert parse_detail((FIXTURES / "detail_T0400004EN.html").read_text(encoding="utf-8")) is None
    assert parse_detail('<div id="article-text"><div>no paragraph</div></div>') == ""


def test_deeply_broken_html_is_parsed_in_linear_time():
    start = time.monotonic()
    root = parse_html("<div>" * 20000 + "<p>deep" + "</span>" * 20000 + "<p><button>" + "<div>" * 20000 + "x")
    assert root.text() == "deepx"  # past the depth cap, content lands in the deepest open element: kept, not lost
    assert time.monotonic() - start < 2


# ---------------------------------------------------------------- into the split stage


def test_the_collected_file_goes_through_the_split_stage_unchanged(site, tmp_path):
    out = tmp_path / "articles.jsonl"
    collect_articles(out, 100, site.base_url, **FAST)
    loaded = read_articles(out, TYPES, on_error="fail")
    assert len(loaded.articles) == 7 and not loaded.invalid

    examples, report = prepare_corpus(data_cfg(out))
    assert report["dropped"] == {"excluded_type": 1, "invalid": 0}  # Fact & Figures, as data.exclude_types says
    assert report["articles_kept"] == 6
    rendered = [
        ex["messages"][2]["content"] for rows in examples.values() for ex in rows if ex["task"] == "tag_extraction"
    ]
    assert "Finance, Facts, Figures | Electromobility | Sales" in rendered


# ---------------------------------------------------------------- data.hub_dataset


def fake_datasets(monkeypatch, load) -> None:
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load))


def test_hub_source_offline_fails_in_one_line_naming_the_param(tmp_path, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")  # no hub, whatever the machine's network
    fake_datasets(monkeypatch, lambda *a, **k: pytest.fail("load_dataset must not be reached offline"))
    source = write_corpus(tmp_path / "a.jsonl", [make_article(i) for i in range(10)])
    start = time.monotonic()
    with pytest.raises(PrunetuneError) as caught:
        prepare_corpus(data_cfg(source, hub_dataset="someone/bmw-press"))
    message = str(caught.value)
    assert message.startswith(
        "params.yaml: data.hub_dataset 'someone/bmw-press': the Hugging Face hub is not reachable"
    )
    assert "\n" not in message and "HF_HUB_OFFLINE=1" in message and "data.source" in message
    assert time.monotonic() - start < 3


def test_hub_source_reads_every_split_and_validates_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the cached copy: no reachability check, no revision lookup
    asked = {}

    def load(name, revision=None):
        asked.update(name=name, revision=revision)
        return {"train": [make_article(i) for i in range(8)], "test": [make_article(8), make_article(9, date="x")]}

    fake_datasets(monkeypatch, load)
    source = write_corpus(tmp_path / "a.jsonl", [make_article(100)])
    cfg = data_cfg(source, hub_dataset="someone/bmw-press@v1", on_error="skip")
    examples, report = prepare_corpus(cfg)
    assert asked == {"name": "someone/bmw-press", "revision": "v1"}
    assert report["source"] == "hf:someone/bmw-press@v1"
    assert (report["lines"], report["articles_valid"]) == (10, 9)
    assert report["invalid"] == [{"line": 2, "problem": "field 'date' must be DD.MM.YYYY, got 'x'"}]  # test split first

    with pytest.raises(
        PrunetuneError, match=r"^hf:someone/bmw-press@v1 row 2: field 'date' .* data\.on_error: skip\)$"
    ):
        prepare_corpus({**cfg, "on_error": "fail"})


def test_hub_load_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def load(name, revision=None):
        raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub or cannot be accessed.\nSecond line")

    fake_datasets(monkeypatch, load)
    source = write_corpus(tmp_path / "a.jsonl", [make_article(1)])
    with pytest.raises(PrunetuneError) as caught:
        prepare_corpus(data_cfg(source, hub_dataset="someone/nothing"))
    assert str(caught.value) == (
        "params.yaml: data.hub_dataset 'someone/nothing': could not load it "
        "(FileNotFoundError: Dataset 'someone/nothing' doesn't exist on the Hub or cannot be accessed.)"
    )


@pytest.mark.parametrize("value", ["", "two words", 3])
def test_bad_hub_dataset_param_is_named(tmp_path, value):
    source = write_corpus(tmp_path / "a.jsonl", [make_article(1)])
    with pytest.raises(PrunetuneError, match="params.yaml: data.hub_dataset must be null or a hub dataset id"):
        prepare_corpus(data_cfg(source, hub_dataset=value))
