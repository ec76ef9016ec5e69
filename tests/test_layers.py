"""tritonops/ keeps its layers: cli > bench > stack > serving > models > settings, each importing only the
layers after it, every module in one of them, and no cycle between modules or packages side by side.

The contracts are pyproject.toml's [tool.importlinter]; import-linter's `lint-imports` checks them on the
package as this checkout has it (PYTHONPATH, whatever the venv's editable install points at). Each contract
is shown to fail on a broken copy.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tritonops import settings

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def broken_copy(tmp_path: Path, changes: dict[str, str]) -> Path:
    """A copy of the package and its contracts with `changes` (a module's path -> a line appended to it)."""
    shutil.copytree(settings.ROOT / "tritonops", tmp_path / "tritonops", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(settings.ROOT / "pyproject.toml", tmp_path)
    for path, line in changes.items():
        with (tmp_path / path).open("a") as f:
            f.write(line + "\n")
    return tmp_path


def test_tritonops_keeps_its_layers_and_has_no_import_cycle():
    done = lint_imports(settings.ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_a_lower_layer_importing_a_higher_one_fails(tmp_path):
    done = lint_imports(broken_copy(tmp_path, {"tritonops/models/fetch.py": "from ..serving import server"}))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tritonops.models is not allowed to import tritonops.serving" in done.stdout
    assert "tritonops.models.fetch -> tritonops.serving.server" in done.stdout


def test_a_module_outside_the_layers_or_a_cycle_fails(tmp_path):
    done = lint_imports(broken_copy(tmp_path, {"tritonops/extra.py": "X = 1",
                                               "tritonops/models/descriptor.py": "from . import validate"}))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "The following modules are not listed as layers:\n\n- tritonops.extra" in done.stdout
    assert "No cycles are allowed in tritonops.models." in done.stdout
