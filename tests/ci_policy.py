"""How a suite reacts when what it needs cannot run here, shared by every suite.

Imported as `ci_policy`: tests/ is on sys.path once tests/conftest.py is loaded (pytest's default
prepend import mode), which happens before any sub-suite is collected.
"""
from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI") == "true"


def tagged(reason: str, need: str | None) -> str:
    """The reason as the run's closing summary groups it (tests/needs.py names each need)."""
    return f"[needs {need}] {reason}" if need else reason


def skip_or_fail(reason: str, need: str | None = None) -> None:
    """Skip where an engine/host cannot run here; in CI a skip would hide a missing install step."""
    reason = tagged(reason, need)
    if IN_CI:
        pytest.fail(f"CI=true but: {reason}")
    pytest.skip(reason)
