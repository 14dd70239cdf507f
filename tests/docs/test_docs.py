"""The documentation a newcomer reads: README.md and docs/ stay short, and every relative link and
anchor in them resolves (issue 30).

Limits: README.md at most 10 KiB (the "what it is, how to run, call, deploy" page); each page
under docs/ at most 24 KiB, about 3,500 words or 15 minutes of reading: one sitting. The pages
`make bench` / `make drill` write (docs/performance.md, docs/reliability.md) are held to it too,
so a bench section that grows past it has to move to its own page.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
README_MAX_BYTES = 10 * 1024
PAGE_MAX_BYTES = 24 * 1024

LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def pages():
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def prose_lines(text):
    """The lines outside fenced code blocks, with inline code spans kept (links inside them are
    not links, so they are blanked)."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped (but `-` and `_`), spaces
    to hyphens; inline code and link markup count by their text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    seen = {}
    found = set()
    for line in prose_lines(path.read_text()):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path):
    for number, line in enumerate(prose_lines(path.read_text()), 1):
        line = re.sub(r"`[^`]*`", "", line)
        for m in LINK.finditer(line):
            yield number, m.group(1)


def broken_links(path):
    broken = []
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{path.relative_to(ROOT)}: link {target!r}: {file_part} does not exist")
            continue
        if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{path.relative_to(ROOT)}: link {target!r}: no heading with anchor #{fragment} in {dest.relative_to(ROOT)}")
    return broken


def test_readme_is_at_most_10_kib():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes, over {README_MAX_BYTES}: move detail into docs/"


@pytest.mark.parametrize("page", sorted((ROOT / "docs").rglob("*.md")), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_docs_page_reads_in_one_sitting(page):
    size = page.stat().st_size
    assert size <= PAGE_MAX_BYTES, f"{page.relative_to(ROOT)} is {size} bytes, over {PAGE_MAX_BYTES}: split it"


def test_every_relative_link_and_anchor_resolves():
    broken = [b for page in pages() for b in broken_links(page)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_reachable_from_the_readme():
    """A page nobody links is a page nobody finds: walk the links from README.md."""
    reached, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        for _, target in links(page):
            file_part = target.partition("#")[0]
            if file_part and not re.match(r"^[a-z][a-z0-9+.-]*:", file_part):
                dest = (page.parent / file_part).resolve()
                if dest.suffix == ".md" and dest.exists():
                    todo.append(dest)
    orphans = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").rglob("*.md")) if p.resolve() not in reached]
    assert not orphans, f"not linked from README.md or a page it links: {orphans}"


# The checker itself, on pages a test writes: it must catch what it claims to.
def test_the_link_check_catches_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Second `part`, here\n\n[ok](#second-part-here) [x](b.md#nope)\n"
                                   "[gone](missing.md)\n```\n[in code](nowhere.md)\n```\n")
    (tmp_path / "b.md").write_text("# B\n")
    broken_path = tmp_path / "a.md"
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        broken = broken_links(broken_path)
    finally:
        ROOT = saved
    assert len(broken) == 2, broken
    assert "missing.md does not exist" in broken[0] or "missing.md does not exist" in broken[1]
    assert any("no heading with anchor #nope" in b for b in broken)


def test_slugs_follow_github():
    assert slug("`sam local invoke`, per sample event") == "sam-local-invoke-per-sample-event"
    assert slug("Where the time goes (posts-read, `scripts/profile.sh`)") == "where-the-time-goes-posts-read-scriptsprofilesh"
    assert slug("Sessions (auth)") == "sessions-auth"
