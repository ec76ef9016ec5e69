"""The docs' settings tables, generated from the files that hold the values (issue 27: one writer per value).

mkdocs loads this file as a hook (mkdocs.yml `hooks:`): a page line `<!-- generated: NAME -->` becomes the
table NAME at build time, so no page repeats a value by hand.

- `settings`: every KEY=VALUE of versions.env with the comment above it, one row per commented group;
- `role-variables`: every role default (ansible/roles/*/defaults/main.yml) as written there, what this
  repo's ansible/group_vars/all.yml sets it to (versions.env keys named), and the comment above it;
- `triton-cves`: the published Triton CVEs of ansible/roles/triton/vars/cves.yml, the list the deploy
  guard reads, with the release that fixed each.

A variable without a comment of its own joins the row above it, as the files group them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS_FILE = ROOT / "versions.env"
ANSIBLE = ROOT / "ansible"
GROUP_VARS = ANSIBLE / "group_vars" / "all.yml"
CVES = ANSIBLE / "roles" / "triton" / "vars" / "cves.yml"
# The order the roles run in site.yml; a role missing here is added after them.
ROLE_ORDER = ("nvidia_driver", "docker", "nvidia_container_toolkit", "triton", "cve_guard", "port_firewall", "gateway", "prometheus")
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)
TOP_LEVEL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):(?:\s+(.*))?$")
ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
SECTION = re.compile(r"^#\s*---.*---\s*$")
VERSIONS_REF = re.compile(r"\{\{\s*tritonops_versions\.(\w+)(?:\s*\|\s*\w+)?\s*\}\}")
LONGEST_VALUE = 60


@dataclass
class Row:
    """Names written together under one comment, their values, and that comment."""
    comment: str
    names: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)


def text_cell(text: str) -> str:
    """Comment prose in a table cell: no HTML, no emphasis, no column break."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", r"\*")
            .replace("|", r"\|"))


def code_cell(text: str) -> str:
    return "`" + text.replace("|", r"\|") + "`" if text else "`\"\"`"


def comment_text(lines: list[str]) -> str:
    return " ".join(line.lstrip("#").strip() for line in lines).strip()


def yaml_top_level(path: Path) -> list[Row]:
    """Rows of a YAML file's top-level keys as written: a value over several lines is joined into one."""
    rows: list[Row] = []
    comment: list[str] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line == "---":
            comment = []
        elif SECTION.match(line):
            comment = []
        elif line.startswith("#"):
            comment.append(line)
        elif match := TOP_LEVEL.match(line):
            value = [match.group(2) or ""]
            while i < len(lines) and lines[i].startswith((" ", "\t")):
                value.append(lines[i].strip())
                i += 1
            if comment or not rows:
                rows.append(Row(comment_text(comment)))
            rows[-1].names.append(match.group(1))
            rows[-1].values.append(" ".join(v for v in value if v not in (">-", "|", ">")).strip())
            comment = []
    return rows


def env_rows(path: Path = VERSIONS_FILE) -> list[Row]:
    """Rows of versions.env: the keys under each comment (a blank line ends a group)."""
    rows: list[Row] = []
    comment: list[str] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            comment = []
        elif line.startswith("#"):
            comment.append(line)
        elif match := ENV_LINE.match(line):
            if comment or not rows:
                rows.append(Row(comment_text(comment)))
            rows[-1].names.append(match.group(1))
            rows[-1].values.append(match.group(2))
            comment = []
    return rows


def settings_table(path: Path = VERSIONS_FILE) -> str:
    out = ["| setting | value | what it is |", "| --- | --- | --- |"]
    for row in env_rows(path):
        out.append(f"| {' / '.join(code_cell(n) for n in row.names)} | {' / '.join(code_cell(v) for v in row.values)} "
                   f"| {text_cell(row.comment) or '–'} |")
    return "\n".join(out) + "\n"


def roles(ansible: Path = ANSIBLE) -> list[str]:
    found = sorted(p.parent.parent.name for p in ansible.glob("roles/*/defaults/main.yml"))
    return [r for r in ROLE_ORDER if r in found] + [r for r in found if r not in ROLE_ORDER]


def group_vars(path: Path = GROUP_VARS) -> dict[str, str]:
    return {name: value for row in yaml_top_level(path) for name, value in zip(row.names, row.values)}


def repo_setting(expression: str) -> str:
    """What group_vars/all.yml sets, in words: versions.env keys by name, the repo root as <repo>."""
    keys = VERSIONS_REF.findall(expression)
    bare = expression.strip().strip('"')
    if VERSIONS_REF.fullmatch(bare):
        return f"versions.env {code_cell(keys[0])}"
    shown = VERSIONS_REF.sub(lambda m: f"<{m.group(1)}>", bare).replace("{{ tritonops_repo_root }}", "<repo>")
    if "{{" in shown or len(shown) > LONGEST_VALUE:
        return "computed" + (f" from versions.env {', '.join(code_cell(k) for k in keys)}" if keys else "")
    return code_cell(shown)


def shown_default(value: str) -> str:
    return code_cell(value) if len(value) <= LONGEST_VALUE else "see the defaults file"


def role_variables_table(ansible: Path = ANSIBLE) -> str:
    repo = group_vars(ansible / "group_vars" / "all.yml")
    out = ["| role | variable | default | this repo (`group_vars/all.yml`) | what it is |", "| --- | --- | --- | --- | --- |"]
    for role in roles(ansible):
        for row in yaml_top_level(ansible / "roles" / role / "defaults" / "main.yml"):
            sets = [repo_setting(repo[n]) if n in repo else "–" for n in row.names]
            out.append(f"| `{role}` | {' / '.join(code_cell(n) for n in row.names)} "
                       f"| {' / '.join(shown_default(v) for v in row.values)} "
                       f"| {' / '.join(sets) if set(sets) != {'–'} else '–'} | {text_cell(row.comment) or '–'} |")
    return "\n".join(out) + "\n"


def cves_table(path: Path = CVES) -> str:
    import yaml  # PyYAML: Ansible's and mkdocs' own dependency

    out = ["| CVE | what | fixed in Triton (NGC) | source |", "| --- | --- | --- | --- |"]
    for cve in yaml.safe_load(path.read_text())["triton_cves"]:
        fixed = f"{cve['fixed_in']} ({cve['ngc']})"
        source = re.sub(r"^https?://(?:www\.)?([^/]+)/.*$", r"\1", cve["source"])
        out.append(f"| {cve['id']} | {text_cell(cve['what'])} "
                   f"| {fixed if cve['confirmed'] else f'**not found**; assumed {fixed}'} | [{source}]({cve['source']}) |")
    return "\n".join(out) + "\n"


TABLES = {"settings": settings_table, "role-variables": role_variables_table, "triton-cves": cves_table}


def expand(markdown: str, page: str = "a page") -> str:
    """Each `<!-- generated: NAME -->` line replaced by its table; an unknown NAME is an error."""
    def table(match: re.Match) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(f"{page}: no generated table {name!r} (known: {', '.join(TABLES)})")
        return TABLES[name]()
    return MARKER.sub(table, markdown)


def on_page_markdown(markdown: str, page, **_) -> str:  # the mkdocs hook
    return expand(markdown, page.file.src_path)
