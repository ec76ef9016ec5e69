"""Model repositories for tests, importable by name from every suite."""
from __future__ import annotations

from pathlib import Path

from tritonops import settings


def linear_only(dest: Path) -> Path:
    """A model repository at dest holding only the shipped linear model (a symlink to it): for tests
    about the server, the gateway or the gate rather than the models, so that each of their servers
    does not also load the embed pipeline (three more Python stubs, ~10 s on the 2-core box)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / settings.MODEL_NAME).symlink_to(settings.MODEL_REPOSITORY / settings.MODEL_NAME)
    return dest
