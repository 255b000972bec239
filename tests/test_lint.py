"""ruff (pyflakes rules and syntax errors, configured in pyproject.toml) finds nothing in the
package, the sims, the tests, the docs and notebook generators and the benchmarks."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a test dependency (pip install -e '.[test]')"
    r = subprocess.run([ruff, "check", "--no-cache", "normflow", "sims", "tests", "docs", "notebooks", "benchmarks"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def _tool(name):
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert exe, f"{name} is a test dependency (pip install -e '.[test]')"
    return exe


def test_type_check_is_clean():
    """``ty check`` (a static type checker; rules in pyproject.toml's [tool.ty.rules]) reports no
    error in the package."""
    r = subprocess.run([_tool("ty"), "check", "--python", sys.prefix, "--output-format", "concise",
                        "--exit-zero-on-warning"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stdout.splitlines() if "error[" in line]
    assert r.returncode == 0 and not errors, "\n".join(errors[:40]) + r.stderr[-2000:]
