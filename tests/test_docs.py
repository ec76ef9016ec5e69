"""The docs are a map that stays true: README.md is short, docs/ builds with `mkdocs build --strict` (a dead
link, a missing anchor or a page left out of the nav fails), and every `make` target and `tritonops`
command the README and the pages show exists.

Commands are read from fenced code blocks (a line's start, or after `&&`, `||`, `;`, `|`) and from inline
code spans that start with the command; placeholders such as `make …` or `tritonops <command>` are not
commands. The command reader and the strict build are each shown to fail on a broken copy.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci_policy import skip_or_fail
from tritonops import settings

ROOT = settings.ROOT
VENV_BIN = Path(sys.executable).parent
README_MAX_LINES = 260
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?$(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
COMMAND_START = re.compile(r"(?:^|&&|\|\||;|\|)[ \t]*(?:\$[ \t]+)?(?:sudo[ \t]+)?(\S*)[ \t]", re.M)
NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
SEPARATORS = {"&&", "||", ";", "|", "(", ")", "&"}


def words_after(text: str) -> list[str]:
    """A command's arguments up to the next separator or comment; prose with a lone apostrophe split plainly."""
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:
        words = text.split()
    out = []
    for word in words:
        if word in SEPARATORS or word.startswith("#"):
            break
        out.append(word)
    return out


def commands(markdown: str, program: str) -> list[tuple[str, list[str]]]:
    """(the command as written, its names): the make targets, or tritonops' subcommand, of every command."""
    snippets = [line for block in FENCE.findall(markdown) for line in block.splitlines()]
    spans = FENCE.sub("", markdown)
    snippets += [span for span in INLINE.findall(spans) if span.startswith(f"{program} ")]
    found = []
    for snippet in snippets:
        for match in COMMAND_START.finditer(snippet):
            if match.group(1).rsplit("/", 1)[-1] != program:
                continue
            names = []
            for word in words_after(snippet[match.end():]):
                if word.startswith("-") or "=" in word:
                    continue  # options and VAR=value
                if not NAME.match(word):
                    break  # prose, a path or a placeholder: the command ends
                names.append(word)
                if program == "tritonops":
                    break  # its subcommand; the rest are that subcommand's own words
            if names:
                found.append((snippet.strip(), names))
    return found


def make_targets() -> set[str]:
    done = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    targets = set(re.findall(r"^\s+(?:\x1b\[[0-9;]*m)*([\w-]+)", done.stdout, re.M))
    assert {"help", "serve", "test", "docs"} <= targets, done.stdout
    return targets


def tritonops_commands() -> set[str]:
    done = subprocess.run([str(VENV_BIN / "tritonops"), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    names = set(re.findall(r"^  ([a-z][a-z-]*)  ", done.stdout, re.M))
    assert {"serve", "deploy"} <= names, done.stdout
    return names


def unknown(pages: list[Path], program: str, known: set[str]) -> list[str]:
    return [f"{'docs/' if page.parent.name == 'docs' else ''}{page.name}: {name!r} in {command!r}"
            for page in pages for command, names in commands(page.read_text(), program)
            for name in names if name not in known]


def test_every_make_target_shown_exists():
    targets = make_targets()
    shown = {name for page in PAGES for _, names in commands(page.read_text(), "make") for name in names}
    assert len(shown) > 20, f"the command reader found only {sorted(shown)}"
    assert not unknown(PAGES, "make", targets), "\n".join(unknown(PAGES, "make", targets))


def test_every_tritonops_command_shown_exists():
    known = tritonops_commands()
    shown = {name for page in PAGES for _, names in commands(page.read_text(), "tritonops") for name in names}
    assert len(shown) > 3, f"the command reader found only {sorted(shown)}"
    assert not unknown(PAGES, "tritonops", known), "\n".join(unknown(PAGES, "tritonops", known))


def test_the_command_reader_sees_what_the_pages_write():
    page = """
Run `make serv HTTP_PORT=9000`, `make` alone, `make …` and `tritonops <command>`; `tritonops.json` is a file.

```sh
make image GPU=1 && make image-tarbal GPU=1    # or make nothing
make bench BENCH_ARGS="--models embed --knob-instances ''"
sudo .venv/bin/tritonops deploi -i hosts.yml
make validate (Triton's ModelConfig proto)
```
"""
    assert commands(page, "make") == [
        ("make image GPU=1 && make image-tarbal GPU=1    # or make nothing", ["image"]),
        ("make image GPU=1 && make image-tarbal GPU=1    # or make nothing", ["image-tarbal"]),
        ('make bench BENCH_ARGS="--models embed --knob-instances \'\'"', ["bench"]),
        ("make validate (Triton's ModelConfig proto)", ["validate"]),
        ("make serv HTTP_PORT=9000", ["serv"]),
    ]
    assert commands(page, "tritonops") == [("sudo .venv/bin/tritonops deploi -i hosts.yml", ["deploi"])]


def test_a_misspelt_command_is_reported(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "page.md"
    page.write_text("```sh\nmake serve && make smok URL=host:8000\ntritonops deploi\n```\n")
    assert unknown([page], "make", make_targets()) == ["docs/page.md: 'smok' in 'make serve && make smok URL=host:8000'"]
    assert unknown([page], "tritonops", tritonops_commands()) == ["docs/page.md: 'deploi' in 'tritonops deploi'"]


def test_the_readme_is_a_map():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): " \
                                           "move the detail to a docs/ page and link it"


def test_the_readme_lists_every_make_target():
    """The Verbs table names every target of `make help`: a new verb gets a row (and a page)."""
    readme = (ROOT / "README.md").read_text()
    verbs = readme.split("## Verbs", 1)[1].split("\n## ", 1)[0]
    missing = sorted(t for t in make_targets() if f"`{t}`" not in verbs)
    assert not missing, f"README.md's Verbs table lacks: {missing}"


def mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        skip_or_fail("mkdocs or mkdocs-material is not installed (make venv installs the dev extra)")
    # cwd: the snippets' base path (the README's sections). The banner about MkDocs 2.0 is not a finding.
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_docs_build_strict(tmp_path):
    done = mkdocs_build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index.html", "deploy/index.html", "architecture/index.html", "img/bench.png"):
        assert (tmp_path / "site" / page).is_file(), page
    # the README's sections, included where they are written
    assert "model_repository/linear" in (tmp_path / "site" / "architecture" / "index.html").read_text()
    assert "make serve" in (tmp_path / "site" / "index.html").read_text()


@pytest.mark.parametrize("page, old, new, phrase", [
    ("docs/deploy.md", "](security.md#supply-chain)", "](security.md#supply-chains)",
     "'security.md#supply-chains'"),
    ("docs/models.md", "](#add-your-model)", "](add-your-model.md)", "'add-your-model.md'"),
    ("README.md", "<!-- --8<-- [start:architecture] -->", "", "Snippet section 'architecture' could not be located"),
])
def test_a_dead_link_fails_the_build(tmp_path, page, old, new, phrase):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copytree(ROOT / "docs", copy / "docs")
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    (copy / "tools").mkdir()  # the hook that generates the settings tables, and the files it reads
    shutil.copy(ROOT / "tools" / "docs_tables.py", copy / "tools")
    for name in ("versions.env", "ansible"):
        (copy / name).symlink_to(ROOT / name)
    text = (copy / page).read_text()
    assert old in text, f"{page} no longer has {old!r}: pick another link to break"
    (copy / page).write_text(text.replace(old, new, 1))
    done = mkdocs_build(copy, tmp_path / "site")
    assert done.returncode != 0 and phrase in done.stdout + done.stderr, done.stdout + done.stderr
