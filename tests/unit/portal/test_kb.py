"""The knowledge base: safe Markdown, titles and front matter, ranked search, the shipped articles."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.web.kb import (
    KnowledgeBase,
    load_knowledge_base,
    parse_article,
    query_terms,
    render_markdown,
    snippet,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "kb"


def kb_of(**sources: str) -> KnowledgeBase:
    return KnowledgeBase(parse_article(slug.replace("_", "-"), text) for slug, text in sources.items())


def test_raw_html_and_script_links_never_become_markup() -> None:
    html = render_markdown(
        "# T\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
        "[click](javascript:alert(1)) [ok](https://example.com/a)"
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<img" not in html
    assert 'href="javascript:' not in html
    assert '<a href="https://example.com/a">ok</a>' in html


def test_title_from_first_heading_is_not_repeated_in_the_body() -> None:
    article = parse_article("a", "# Server down\n\nIt does not answer.\n\n## Checks\n\nPing it.")
    assert article.title == "Server down"
    assert "<h1>" not in article.html
    assert "<h2>Checks</h2>" in article.html
    assert article.text.startswith("It does not answer.")
    assert article.summary == article.text


def test_front_matter_gives_title_summary_and_keywords() -> None:
    article = parse_article(
        "tls",
        "---\ntitle: Certificates\nsummary: When TLS fails.\nkeywords: [x509, handshake]\n---\nBody text.\n",
    )
    assert (article.title, article.summary, article.keywords) == (
        "Certificates",
        "When TLS fails.",
        ("x509", "handshake"),
    )
    assert "---" not in article.html


@pytest.mark.parametrize(
    ("slug", "source", "why"),
    [
        ("Bad_Slug", "# T\n", "bad slug"),
        ("no-title", "just text\n", "no title"),
        ("bad-front", "---\n[unclosed\n---\n# T\n", "front matter"),
        ("list-front", "---\n- a\n- b\n---\n# T\n", "mapping"),
    ],
)
def test_unusable_articles_are_refused_with_a_reason(slug: str, source: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_article(slug, source)


def test_query_terms_drop_stopwords_and_repeats() -> None:
    assert query_terms("The server is DOWN, the server!") == ["server", "down"]
    assert query_terms("a an the") == []
    assert len(query_terms(" ".join(f"w{i}" for i in range(50)))) == 12


def test_search_ranks_title_over_body_and_more_terms_first() -> None:
    kb = kb_of(
        dns="# DNS problems\n\nNames do not resolve.",
        slow="# Slow responses\n\nSometimes DNS lookups are slow, DNS DNS.",
        both="# Slow DNS\n\nResolution takes long.",
    )
    assert [h.slug for h in kb.search("dns")][:2] == ["dns", "both"]
    assert [h.slug for h in kb.search("slow dns")][:1] == ["both"]
    assert kb.search("kubernetes") == []
    assert kb.search("") == []
    assert kb.search("the") == []


def test_last_word_matches_as_a_prefix_while_typing() -> None:
    kb = kb_of(tls="# Certificate errors\n\nExpired certificates.", other="# Other\n\nNothing.")
    assert [h.slug for h in kb.search("certif")] == ["tls"]
    assert kb.search("certif other") != []
    assert kb.search("certif other")[0].slug == "other"
    assert [h.slug for h in kb.search("ce")] == []  # too short for a prefix


def test_snippet_is_cut_around_the_first_match() -> None:
    text = "word " * 100 + "the certificate expired yesterday " + "tail " * 100
    piece = snippet(text, ["certificate"], width=80)
    assert "certificate expired" in piece
    assert piece.startswith("…")
    assert piece.endswith("…")
    assert len(piece) <= 82
    assert snippet("short text", ["nothing"]) == "short text"


def test_loader_skips_bad_files_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# Good\n\nFine.")
    (tmp_path / "untitled.md").write_text("no heading")
    (tmp_path / "binary.md").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "huge.md").write_text("# Huge\n\n" + "x" * 300_000)
    (tmp_path / "notes.txt").write_text("# Not markdown")
    kb = load_knowledge_base(tmp_path)
    assert list(kb.articles) == ["good"]
    assert sorted(p.split(":")[0] for p in kb.problems) == ["binary.md", "huge.md", "untitled.md"]
    assert len(load_knowledge_base(None)) == 0
    assert len(load_knowledge_base(tmp_path / "missing")) == 0


def test_the_shipped_articles_load_and_answer_the_usual_questions() -> None:
    kb = load_knowledge_base(EXAMPLES)
    assert kb.problems == []
    assert len(kb) >= 6
    expected = {
        "server not responding timeout": "server-unreachable",
        "pages load very slowly at peak hours": "slow-responses",
        "certificate expired": "tls-certificate-errors",
        "could not resolve host": "dns-problems",
        "planned maintenance window": "planned-maintenance",
        "failover to the secondary": "backup-servers",
        "what to put in a case": "filing-a-good-case",
        "end user contact": "end-users-vs-partners",
    }
    for query, slug in expected.items():
        hits = kb.search(query)
        assert [h.slug for h in hits][:1] == [slug], query
    for article in kb.articles.values():
        assert "<script" not in article.html
        assert article.summary
