"""The knowledge base: solution pointers from a folder of Markdown articles, rendered safely and searched.

One article per `<slug>.md` file in `settings.kb_dir` (slug: lower-case letters, digits and dashes). The title
is the first `# heading`; an optional YAML front matter block (`---` ... `---`) may give `title`, `summary`
and `keywords`, which rank higher in search. Markdown becomes HTML with markdown-it-py with raw HTML
disabled (a `<script>` in an article is shown as text, `javascript:` links are dropped), so an article file
can never inject markup into the portal.

Search is plain ranked term matching, small enough to read: the query is split into words, each word
scores by where it occurs (title > keywords > headings > body), the last word also matches as a prefix
(so suggestions follow a partner who is still typing), and articles that match more of the words rank
first. No IO besides `load_knowledge_base`; a bad file is skipped with a logged reason, never fatal.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

log = logging.getLogger(__name__)

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
MAX_ARTICLE_BYTES = 256 * 1024
"""Larger files are skipped: an article is a page, not a manual."""
MAX_QUERY_CHARS = 400
MAX_TERMS = 12
SNIPPET_CHARS = 180

_WORD = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]|[a-z0-9]")
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
_STOPWORDS = (
    "a an and are as at be but by can do does for from has have how i if in is it its my no not of on or our "
    "so than that the their then there this to was we what when where which who why will with you your"
)
STOPWORDS = frozenset(_STOPWORDS.split(" "))
"""Words too common to say anything about which article fits."""

# Weights of a term's occurrences by where it is found (per occurrence, body hits capped).
W_TITLE = 8.0
W_KEYWORD = 6.0
W_SUMMARY = 3.0
W_HEADING = 3.0
W_BODY = 1.0
BODY_CAP = 5


def markdown_renderer() -> MarkdownIt:
    """CommonMark plus tables, with raw HTML off: article text can never become markup."""
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


_MD = markdown_renderer()


def render_markdown(text: str) -> str:
    """Markdown to safe HTML (raw HTML escaped; markdown-it drops javascript:/vbscript:/data: links)."""
    return str(_MD.render(text))


@dataclass(frozen=True)
class Article:
    """One knowledge-base article."""

    slug: str
    title: str
    summary: str
    keywords: tuple[str, ...]
    html: str
    """The body rendered to safe HTML."""
    text: str
    """The body as plain text (for snippets)."""
    headings: str
    """The section headings as plain text."""
    _words: dict[str, dict[str, int]] = field(default_factory=dict, repr=False, compare=False)
    """Field name -> word -> occurrences (title, keywords, summary, headings, body)."""


@dataclass(frozen=True)
class Hit:
    """A search result: which article, how well it fits, and a piece of its text around the match."""

    slug: str
    title: str
    snippet: str
    score: float

    def as_json(self) -> dict[str, str]:
        return {"slug": self.slug, "title": self.title, "snippet": self.snippet}


def stem(word: str) -> str:
    """A crude English stem, the same for index and query: `certificates`/`certificate`, `responding`/
    `respond`, `expired`/`expire`... (one suffix off words longer than four letters)."""
    if len(word) > 4:
        for suffix in ("ing", "ies", "es", "ed", "s"):
            if word.endswith(suffix) and not word.endswith("ss"):
                return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def words(text: str) -> list[str]:
    """The lower-case stemmed words of `text` (letters, digits, inner dots/dashes: `tls`, `x509`,
    `api.example`)."""
    return [stem(word) for word in _WORD.findall(text.lower())]


def query_terms(query: str) -> list[str]:
    """The distinct meaningful words of a query, in order (stopwords and 1-letter words dropped)."""
    seen: list[str] = []
    for word in _WORD.findall(query[:MAX_QUERY_CHARS].lower()):
        if len(word) <= 1 or word in STOPWORDS:
            continue
        word = stem(word)
        if word not in seen:
            seen.append(word)
    return seen[:MAX_TERMS]


def _count(items: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def _plain(tokens: list[Token]) -> tuple[str, str, str]:
    """(first h1 text, all heading text, body text) of a markdown-it token stream."""
    title, headings, body = "", [], []
    in_heading: str | None = None
    for token in tokens:
        if token.type == "heading_open":
            in_heading = token.tag
        elif token.type == "heading_close":
            in_heading = None
        elif token.type in ("inline", "fence", "code_block"):
            if token.type == "inline":
                text = "".join(
                    child.content if child.type in ("text", "code_inline") else " "
                    for child in token.children or []
                    if child.type in ("text", "code_inline", "softbreak", "hardbreak")
                )
            else:
                text = token.content
            text = " ".join(text.split())
            if token.type == "inline" and text and in_heading != "h1" and text[-1] not in ".!?:;…":
                text += "."  # headings and table cells read as sentences in snippets
            if in_heading == "h1" and not title:
                title = text
            elif in_heading:
                headings.append(text)
                body.append(text)
            else:
                body.append(text)
    return title, " · ".join(headings), " ".join(body)


def _without_first_h1(tokens: list[Token]) -> list[Token]:
    """The tokens less the first level-1 heading (the page shows the title itself)."""
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h1":
            return tokens[:i] + tokens[i + 3 :]
    return tokens


def _front_matter(source: str) -> tuple[dict[str, Any], str]:
    match = _FRONT.match(source)
    if match is None:
        return {}, source
    data = yaml.safe_load(match.group(1)) or {}
    if not isinstance(data, dict):
        raise ValueError("front matter must be a mapping")
    return data, source[match.end() :]


def parse_article(slug: str, source: str) -> Article:
    """An article from its Markdown source; ValueError when it has no usable title or bad front matter."""
    if not SLUG.match(slug):
        raise ValueError(f"bad slug {slug!r} (lower-case letters, digits and dashes)")
    try:
        meta, body = _front_matter(source)
    except yaml.YAMLError as exc:
        raise ValueError(f"front matter is not YAML: {exc}") from exc
    tokens = _MD.parse(body)
    h1, headings, text = _plain(tokens)
    title = str(meta.get("title") or h1).strip()
    if not title:
        raise ValueError("no title (a '# heading' or front matter 'title')")
    raw_keywords = meta.get("keywords") or []
    if isinstance(raw_keywords, str):
        raw_keywords = raw_keywords.split(",")
    keywords = tuple(str(k).strip() for k in raw_keywords if str(k).strip())
    given_summary = " ".join(str(meta.get("summary") or "").split())
    if text.startswith(title):
        text = text[len(title) :].strip()
    summary = given_summary or (
        text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "…"
    )
    index = {
        "title": _count(words(title)),
        "keywords": _count(words(" ".join(keywords))),
        "summary": _count(words(given_summary)),
        "headings": _count(words(headings)),
        "body": _count(words(text)),
    }
    return Article(
        slug=slug,
        title=title,
        summary=summary,
        keywords=keywords,
        html=_MD.renderer.render(_without_first_h1(tokens), _MD.options, {}),
        text=text,
        headings=headings,
        _words=index,
    )


_WEIGHTS = {
    "title": W_TITLE,
    "keywords": W_KEYWORD,
    "summary": W_SUMMARY,
    "headings": W_HEADING,
    "body": W_BODY,
}


def _term_score(article: Article, term: str, prefix: bool) -> float:
    score = 0.0
    for name, weight in _WEIGHTS.items():
        counts = article._words.get(name, {})
        hits = counts.get(term, 0)
        if prefix and len(term) >= 3:
            hits = max(hits, sum(n for word, n in counts.items() if word.startswith(term)))
        hits = min(hits, BODY_CAP if name == "body" else 1)
        score += weight * hits
    return score


def snippet(text: str, terms: list[str], width: int = SNIPPET_CHARS) -> str:
    """About `width` characters of `text` around the first occurrence of any term (word start)."""
    lower = text.lower()
    positions = [m.start() for t in terms for m in [re.search(rf"(?<![a-z0-9]){re.escape(t)}", lower)] if m]
    if not positions:
        cut = text[:width]
        return cut.rsplit(" ", 1)[0] + "…" if len(text) > width else text
    first = min(positions)
    start = max(0, first - width // 3)
    if start > 0:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < first else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > first else end
    return ("…" if start > 0 else "") + text[start:end].strip() + ("…" if end < len(text) else "")


class KnowledgeBase:
    """The loaded articles by slug, in title order, with ranked search."""

    def __init__(self, articles: Iterable[Article] = (), problems: Iterable[str] = ()) -> None:
        self.articles: dict[str, Article] = {
            a.slug: a for a in sorted(articles, key=lambda a: a.title.lower())
        }
        self.problems: list[str] = list(problems)
        """One line per skipped file: which and why."""

    def __len__(self) -> int:
        return len(self.articles)

    def get(self, slug: str) -> Article | None:
        return self.articles.get(slug)

    def search(self, query: str, limit: int = 5) -> list[Hit]:
        """The best-fitting articles for `query`, best first (none for an empty or stopword-only query).

        Rank: the weighted score times the share of the query's words the article has (so one strong
        match beats several stray body mentions, and an article with every word wins among equals); the
        last word also matches word prefixes (the partner may be mid-word).
        """
        terms = query_terms(query)
        if not terms or limit <= 0:
            return []
        ranked: list[tuple[float, str, Article]] = []
        for article in self.articles.values():
            matched, score = 0, 0.0
            for i, term in enumerate(terms):
                term_score = _term_score(article, term, prefix=i == len(terms) - 1)
                if term_score:
                    matched += 1
                    score += term_score
            if matched:
                ranked.append((score * matched / len(terms), article.title.lower(), article))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        return [
            Hit(slug=a.slug, title=a.title, snippet=snippet(a.text, terms), score=round(score, 2))
            for score, _, a in ranked[:limit]
        ]


def load_knowledge_base(folder: Path | None) -> KnowledgeBase:
    """Every `*.md` article in `folder` (empty when None or missing); bad files are skipped and listed."""
    if folder is None:
        return KnowledgeBase()
    folder = Path(folder)
    if not folder.is_dir():
        log.warning("knowledge base folder %s does not exist: no articles", folder)
        return KnowledgeBase(problems=[f"{folder}: not a folder"])
    articles: list[Article] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.md")):
        try:
            if path.stat().st_size > MAX_ARTICLE_BYTES:
                raise ValueError(f"larger than {MAX_ARTICLE_BYTES} bytes")
            articles.append(parse_article(path.stem, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problems.append(f"{path.name}: {exc}")
    for problem in problems:
        log.warning("knowledge base: skipped %s", problem)
    return KnowledgeBase(articles, problems)
