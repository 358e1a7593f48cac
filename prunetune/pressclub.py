"""The BMW PressClub's two page kinds: a listing page's entries and an article page's text."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from prunetune.htmltree import NO_TEXT_TAGS, Element, parse_html

DEFAULT_BASE_URL = "https://www.press.bmwgroup.com"
LISTING_PATH = "/global/article"
DETAIL_MARKER = "/article/detail/"


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
