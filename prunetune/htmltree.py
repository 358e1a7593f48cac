"""A small, forgiving HTML tree: html.parser's events built into elements the way browsers close tags, in linear
time however broken the page (a depth cap as browsers have; stray end tags ignored).

Kept over selectolax (tried): its HTML5 parser (lexbor) took 1.8 s on the test's 60,000-deep broken page (this
one: 0.2 s) and nests that page's text differently; the tree and text rules here are what the collector's tests pin."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

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
