"""The docs are one set of pages beside the code: every relative link and image in README.md and
docs/*.md points at a file of the repository, every `docs/theory.md §N` that the code cites is a
section of the page, and nothing in the repository points at the shared theory file or a machine
path (the strict part of a docs build, without a docs toolchain to install)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
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


def test_docs_build_strict(tmp_path):
    """The site builds with mkdocs in strict mode (mkdocs.yml: a broken link, a missing page, a
    bad anchor or an unreadable docstring is an error), API reference from the docstrings."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs is not installed (it is in the test extras)"
    r = subprocess.run([mkdocs, "build", "--strict", "--quiet", "-d", str(tmp_path / "site")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "train" / "index.html").stat().st_size > 10_000


def test_readme_main_job_table_is_rendered_from_the_committed_results():
    """The README's main-job table is docs/make_tables.py's rendering of docs/results/ (the
    committed reference results), not typed by hand: every number in it traces to a run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "docs" / "make_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert mod.BEGIN in readme and mod.END in readme
    assert mod.render_readme(readme) == readme, "README table is stale: run python docs/make_tables.py"
    from normflow.optimizers import OPTIMIZERS

    for name in OPTIMIZERS:
        r = json.loads((mod.RESULTS / f"{name}.json").read_text(encoding="utf-8"))
        assert r["optimizer"] == name and r["config"]["seed"] == 0 and r["config"]["quick"] is False
        assert r["status"] == "ok"


def test_real_model_tables_are_rendered_from_the_committed_results():
    """docs/real.md's, the README's and docs/theory.md §17's real-model tables are
    docs/make_tables.py's rendering of docs/results/real/ (default runs, seed 0), not typed by hand."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "docs" / "make_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    marked = set()
    for page in mod.REAL_PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        assert mod.render_real(text) == text, f"{page}: real-model table is stale: run python docs/make_tables.py"
        marked |= {n for n in mod.REAL_TABLES if mod._markers(n)[0] in text}
    assert marked == set(mod.REAL_TABLES)  # every table is shown somewhere
    for name in mod.REAL_EXPERIMENTS:
        r = json.loads((mod.REAL / f"{name}.json").read_text(encoding="utf-8"))
        assert r["status"] == "ok" and r["config"]["seed"] == 0 and r["config"]["quick"] is False, name


def test_benchmark_tables_are_rendered_from_the_committed_results():
    """docs/benchmarks.md's scaling table is docs/make_tables.py's rendering of
    docs/results/benchmarks/scale.json (a full run of benchmarks/run.py --only scale)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "docs" / "make_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for page in mod.BENCH_PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        assert mod.render_bench(text) == text, f"{page}: benchmark table is stale: run python docs/make_tables.py"
        assert all(mod._bench_markers(n)[0] in text for n in mod.BENCH_TABLES)
    details = json.loads(mod.SCALE.read_text(encoding="utf-8"))["details"]
    assert details["quick"] is False and {r["concepts"] for r in details["scale"]["rows"]} >= {1024, 131072}
