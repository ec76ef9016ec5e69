"""Secrets this repo generates on the machine it runs on (Triton's admin key, Grafana's password):
created once, readable by their owner only, and refused once someone loosened their mode."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable


class PrivateFileError(RuntimeError):
    pass


def ensure(path: Path, generate: Callable[[], str], what: str) -> Path:
    """path, written with generate() first if missing (folder 0700, file 0600 from its creation);
    raises PrivateFileError when its mode lets other users read `what`."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL + 0600 from the start: never readable by others, not even for a moment.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(generate())
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PrivateFileError(f"{path}: mode {mode:04o} lets other users read {what}; chmod 600 {path}")
    return path
