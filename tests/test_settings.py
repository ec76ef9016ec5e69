"""versions.env is the single source of truth; a malformed line is named by file and line."""
from __future__ import annotations

import re

import pytest

from tritonops import settings


def test_versions_file_defines_the_pins_and_ports():
    v = settings.versions()
    assert re.fullmatch(r"\d+\.\d+\.\d+", v["TRITON_VERSION"])
    assert re.fullmatch(r"\d\d\.\d\d", v["NGC_TAG"])
    assert {settings.port("http"), settings.port("grpc"), settings.port("metrics")} == {8000, 8001, 8002}


def test_malformed_line_is_named(tmp_path):
    bad = tmp_path / "versions.env"
    bad.write_text("# comment\nGOOD=1\nnot a pair\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}:3: expected KEY=VALUE, got 'not a pair'"):
        settings.parse_env_file(bad)


def test_missing_key_is_named():
    with pytest.raises(KeyError, match="no NOPE= line"):
        settings.get("NOPE")
