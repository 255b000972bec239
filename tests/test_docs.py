"""The docs are one set of pages beside the code: every relative link and image in README.md and
docs/*.md points at a file of the repository, every `docs/theory.md §N` that the code cites is a
section of the page, and nothing in the repository points at the shared theory file or a machine
path (the strict part of a docs build, without a docs toolchain to install)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            bad.append(target)
    assert not bad, f"{page.name}: broken links {bad}"


def _sections() -> set[str]:
    text = (ROOT / "docs" / "theory.md").read_text(encoding="utf-8")
    return set(re.findall(r"^#+ §(\d+(?:\.\d+)*)", text, flags=re.M))


def test_every_cited_theory_section_exists():
    have = _sections()
    assert {"1", "2", "8.2", "15"} <= have
    missing = {}
    files = [*ROOT.glob("normflow/**/*.py"), *ROOT.glob("sims/*.py"), *ROOT.glob("tests/*.py")]
    for f in files:
        for sec in re.findall(r"docs/theory\.md §(\d+(?:\.\d+)*)", f.read_text(encoding="utf-8")):
            if sec not in have and sec.split(".")[0] not in have:
                missing.setdefault(sec, f.relative_to(ROOT).as_posix())
    assert not missing, missing


def test_no_pointer_outside_the_repository():
    files = [*ROOT.glob("normflow/**/*.py"), *ROOT.glob("sims/*.py"), *PAGES, ROOT / "Makefile"]
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert "THEORY.md" not in text, f
        assert not re.search(r"(?<![\w.])/(work|home|Users|root)/\w", text), f
