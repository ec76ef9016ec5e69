"""One writer per value (issue 27 item 2). `versions.env` writes every version, port and limit once; each copy
that has to exist is checked here, and a failure names both places.

- Role defaults stay literal, so each role works on its own. `ansible/group_vars/all.yml` maps versions.env
  onto the roles' variables; every default it maps (read from group_vars itself, so a new mapping is
  checked without touching this file) equals the value it maps, and so does the triton role's image refs.
- The docs' settings tables are generated (`tools/docs_tables.py`, a mkdocs hook): every versions.env key,
  every role default and every CVE of the triton role's list is in them. Where a page still quotes a value
  beside its key, or names a Triton release, it agrees with versions.env (or the CVE list's fixes).
- Measurements live on the docs' benchmark page, not in versions.env or config comments.

Elsewhere: `images/Dockerfile`'s BASE_IMAGE default (tests/docker/test_image_files.py), the Python pins of
pyproject.toml and the lock (tests/test_settings.py), the gateway template's inputs (tests/gateway/test_template.py).
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from tritonops import settings
from tritonops.stack import images

ROOT = settings.ROOT
ANSIBLE = ROOT / "ansible"
GROUP_VARS = ANSIBLE / "group_vars" / "all.yml"
CVES = ANSIBLE / "roles" / "triton" / "vars" / "cves.yml"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
V = settings.versions()

spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "tools" / "docs_tables.py")
docs_tables = sys.modules["docs_tables"] = importlib.util.module_from_spec(spec)  # as mkdocs loads a hook
spec.loader.exec_module(docs_tables)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def role_defaults() -> dict[str, tuple[Path, object]]:
    """{variable: (its defaults file, its literal value)} over every role."""
    found = {}
    for path in sorted(ANSIBLE.glob("roles/*/defaults/main.yml")):
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            found[name] = (path, value)
    return found


def versions_mappings() -> dict[str, str]:
    """group_vars/all.yml's variables made of versions.env values alone: {variable: the value it renders to}."""
    mapped = {}
    for name, expression in (yaml.safe_load(GROUP_VARS.read_text()) or {}).items():
        if not isinstance(expression, str) or "tritonops_versions." not in expression:
            continue
        rendered = docs_tables.VERSIONS_REF.sub(lambda m: V[m.group(1)], expression)
        if "{{" not in rendered:  # anything else (the repo root, a lookup) is not a copy of a value
            mapped[name] = rendered
    return mapped


MAPPED = versions_mappings()
DEFAULTS = role_defaults()


def test_group_vars_maps_versions_env_onto_the_roles():
    """The mappings this module reads: more than a handful, each onto a variable some role declares."""
    assert len(MAPPED) >= 20, sorted(MAPPED)
    undeclared = sorted(set(MAPPED) - set(DEFAULTS))
    assert not undeclared, f"{rel(GROUP_VARS)} sets {undeclared}, which no role's defaults/main.yml declares"


@pytest.mark.parametrize("name", sorted(set(MAPPED) & set(DEFAULTS)))
def test_role_default_equals_the_versions_env_value_group_vars_gives_it(name):
    path, default = DEFAULTS[name]
    expression = yaml.safe_load(GROUP_VARS.read_text())[name]
    assert str(default) == MAPPED[name], (
        f"{rel(path)}: {name}: {default!r}, but {rel(GROUP_VARS)} sets it to {expression!r} = {MAPPED[name]!r} "
        f"from versions.env: change the role default to {MAPPED[name]!r} (the role's own copy, for use without this repo)")


def test_triton_role_image_refs_default_names_the_images_tritonops_images_names():
    """The role's fallback for `triton_image_refs` (group_vars reads `python -m tritonops.stack.images refs`)."""
    path, default = DEFAULTS["triton_image_refs"]
    built = images.refs()
    for name, ref in default.items():
        for field, value in ref.items():
            if field in ("tarball", "build_args"):  # paths on the controller and build inputs: the repo's own
                continue
            assert str(value) == str(built[name][field]), (
                f"{rel(path)}: triton_image_refs.{name}.{field} is {value!r}, `python -m tritonops.stack.images refs` "
                f"(from versions.env) gives {built[name][field]!r}")
    assert set(default) == set(built), f"{rel(path)}: triton_image_refs has {sorted(default)}, tritonops.stack.images {sorted(built)}"


def test_the_settings_table_lists_every_versions_env_key_with_its_value():
    table = docs_tables.settings_table()
    rows = {row: line for line in table.splitlines() for row in re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1])}
    assert set(rows) == set(V), f"docs' settings table and versions.env differ: {sorted(set(rows) ^ set(V))}"
    for key, line in rows.items():
        assert f"`{V[key]}`" in line or (V[key] == "" and '`""`' in line), f"{key}={V[key]!r} not in its row: {line}"


def test_the_role_variables_table_lists_every_role_default():
    table = docs_tables.role_variables_table()
    shown = [name for line in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", line.split("|")[2])]
    assert sorted(shown) == sorted(DEFAULTS), f"role defaults missing from the table: {sorted(set(DEFAULTS) - set(shown))}"
    for line in table.splitlines()[2:]:
        assert line.count(" | ") == 4, f"a cell breaks the table (an unescaped |): {line}"


def test_the_pages_ask_for_the_generated_tables_and_an_unknown_one_fails():
    asked = {(rel(page), name) for page in DOCS for name in docs_tables.MARKER.findall(page.read_text())}
    assert asked == {("docs/deploy.md", "role-variables"), ("docs/settings.md", "settings"),
                     ("docs/security.md", "triton-cves")}, asked
    assert "| `TRITON_VERSION` / `NGC_TAG`" in docs_tables.expand("<!-- generated: settings -->\n")
    cves = yaml.safe_load(CVES.read_text())["triton_cves"]
    assert [line.split(" | ")[0][2:] for line in docs_tables.cves_table().splitlines()[2:]] == [c["id"] for c in cves]
    with pytest.raises(ValueError, match="docs/x.md: no generated table 'nope'"):
        docs_tables.expand("<!-- generated: nope -->\n", "docs/x.md")


# A value quoted beside its key: `KEY` (value) in prose, or versions.env's `KEY=value`. Commands that
# override a key (`make serve HTTP_PORT=9000`) are not copies.
QUOTED = re.compile(r"`([A-Z][A-Z0-9_]+)`\s*\(([^);]+)[);]|versions\.env[^.\n]{0,40}?`([A-Z][A-Z0-9_]+)=([^\s`,;)]+)`")
# Triton releases named in prose: the server version, the NGC tag in image names.
RELEASES = [
    (re.compile(r"\bTriton (\d+\.\d+\.\d+)"), ("TRITON_VERSION", "CPU_TRITON_VERSION")),
    (re.compile(r"\bNGC (\d\d\.\d\d)\b"), ("NGC_TAG", "CPU_NGC_TAG")),
    (re.compile(r"tritonserver:(\d\d\.\d\d)-py3"), ("NGC_TAG",)),
    (re.compile(r"tritonops/triton:(\d\d\.\d\d)-gpu"), ("NGC_TAG",)),
    (re.compile(r"tritonops/triton:(\d\d\.\d\d)-cpu"), ("CPU_NGC_TAG",)),
    (re.compile(r"tritonops/tritonserver-cpu:(\d\d\.\d\d)"), ("CPU_NGC_TAG",)),
]
# Older releases the docs may name: the first fixed release of each published CVE (the one list of them).
FIXES = {str(cve[field]) for cve in yaml.safe_load(CVES.read_text())["triton_cves"] for field in ("fixed_in", "ngc")}


def quoted_values(text: str) -> list[tuple[str, str]]:
    found = []
    for match in QUOTED.finditer(text):
        key, value = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        if key in V and re.fullmatch(r"[\w.:/-]*\d[\w.:/-]*", value.strip()):  # a value, not words about it
            found.append((key, value.strip()))
    return found


def test_values_quoted_in_the_docs_are_versions_env_values():
    wrong = [f"{rel(page)}:{n}: {key} {value!r}, versions.env {key}={V[key]!r}"
             for page in DOCS for n, line in enumerate(page.read_text().splitlines(), 1)
             for key, value in quoted_values(line) if value != V[key]]
    assert not wrong, "\n".join(wrong)


def test_the_triton_releases_the_docs_name_are_versions_env_ones():
    wrong = [f"{rel(page)}:{n}: {match.group(0)!r}, versions.env {' / '.join(f'{k}={V[k]}' for k in keys)} "
             f"(or a fix listed in {rel(CVES)})"
             for page in DOCS for n, line in enumerate(page.read_text().splitlines(), 1)
             for pattern, keys in RELEASES for match in pattern.finditer(line)
             if match.group(1) not in {V[k] for k in keys} | FIXES]
    assert not wrong, "\n".join(wrong)


def test_a_stale_copy_in_the_docs_is_named():
    assert quoted_values("limit `GATEWAY_MAXCONN` (511), versions.env `NGC_TAG=26.09`; `HTTP_PORT` (the port), "
                         "`make serve HTTP_PORT=9000`") == [("GATEWAY_MAXCONN", "511"), ("NGC_TAG", "26.09")]


# A figure measured on some box: a size, a time, a rate, or the words that report one.
MEASUREMENT = re.compile(r"\b\d[\d,.]*\s?(?:MiB|GiB|MB|GB|infer/s|requests/s|req/s)\b|~\d|\b(?:seen|measured)\b|\d\.\d+x\b")
CONFIG_FILES = [ROOT / "versions.env", ROOT / "gateway" / "haproxy.cfg.j2", *sorted((ROOT / "compose").glob("*.yaml")),
                *sorted(ANSIBLE.glob("roles/*/defaults/main.yml")), *sorted((ROOT / "images").glob("*Dockerfile"))]


def comments(path: Path) -> list[tuple[int, str]]:
    found = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if "#" in line:
            code, _, comment = line.partition("#")
            if not code.strip() or code.rstrip() != code:  # a whole-line comment, or one after the value
                found.append((n, comment))
    return found


@pytest.mark.parametrize("path", CONFIG_FILES, ids=rel)
def test_measurements_live_on_the_benchmark_page_not_in_config_comments(path):
    found = [f"{rel(path)}:{n}: {text.strip()}" for n, text in comments(path) if MEASUREMENT.search(text)]
    assert not found, "move the figure, with its date and command, to docs/benchmarks.md " \
                      "(Measurements behind the settings) and keep the reason here:\n" + "\n".join(found)
