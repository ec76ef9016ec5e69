"""`pip install .` is what the runtime code imports and no more; the dev extra covers what the tests add.

deptry reads pyproject.toml ([tool.deptry] there) and maps every import to its distribution: an import of
a package that is not a direct runtime dependency (missing, only transitive, or dev-only) fails, and so
does a runtime dependency that no runtime code imports (a test tool slipped in).
"""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tritonops import settings

# What a controller runs: the package, the Locust files (make loadtest, make bench) and the models'
# model.py (the local server's Python backend runs them with this environment's torch and numpy).
RUNTIME_ROOTS = ["tritonops", "loadtests", "model_repository"]
TESTS = settings.ROOT / "tests"


def deptry(*args: str | Path, config: Path = settings.ROOT / "pyproject.toml") -> str:
    done = subprocess.run([sys.executable, "-m", "deptry", "--no-ansi", "--config", str(config), *map(str, args)],
                          cwd=settings.ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_runtime_code_imports_only_runtime_dependencies_and_uses_each():
    deptry(*RUNTIME_ROOTS)
    project = tomllib.loads((settings.ROOT / "pyproject.toml").read_text())["project"]
    runtime = {Requirement(r).name.lower() for r in project["dependencies"]}
    dev = {Requirement(r).name.lower() for r in project["optional-dependencies"]["dev"]}
    assert not runtime & dev, f"pinned twice, runtime and dev: {sorted(runtime & dev)}"


def test_a_dev_tool_in_the_runtime_or_an_undeclared_import_fails(tmp_path):
    """The check above can fail: pytest among the runtime dependencies, jinja2 (gateway.py's) dropped."""
    text = (settings.ROOT / "pyproject.toml").read_text()
    assert '    "jinja2==' in text
    broken = tmp_path / "pyproject.toml"
    broken.write_text(text.replace('    "jinja2==', '    "pytest==9.2.0",\n    # "jinja2==', 1))
    done = subprocess.run([sys.executable, "-m", "deptry", "--no-ansi", "--config", str(broken), *RUNTIME_ROOTS],
                          cwd=settings.ROOT, capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DEP002 'pytest' defined as a dependency but not used" in done.stdout + done.stderr
    assert "tritonops/stack/gateway.py:" in done.stdout + done.stderr and "DEP003 'jinja2'" in done.stdout + done.stderr


def test_tests_import_only_runtime_and_dev_dependencies():
    """`pip install .[dev]` runs the suites. deptry takes each folder with .py files under a root for a local
    module (tests/docker would hide the docker SDK), so the suites' folders are roots themselves, with the
    shared helpers (tests/*.py) first-party; the top-level files get their own run."""
    suites = sorted(p.relative_to(settings.ROOT) for p in TESTS.iterdir() if p.is_dir() and any(p.glob("*.py")))
    helpers = [arg for p in TESTS.glob("*.py") for arg in ("--known-first-party", p.stem)]
    # Runtime dependencies unused in tests (DEP002) and dev ones used (DEP004) are the point here.
    common = ["--ignore", "DEP002,DEP004", "--known-first-party", "tritonops"]
    deptry(*suites, *common, *helpers, "--exclude", r".*/__pycache__/")
    # needs.py probes the test hosts with tests/ansible's testhost helper (imported when a testhost test runs).
    deptry("tests", *common, "--known-first-party", "testhost", "--exclude", r"tests/[^/]+/")
