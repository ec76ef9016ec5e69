"""versions.env is the single source of truth; a malformed line is named by file and line."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from tritonops import settings


def test_versions_file_defines_the_pins_and_ports():
    v = settings.versions()
    for triton, tag, python in (("TRITON_VERSION", "NGC_TAG", "NGC_PYTHON_VERSION"),  # GPU image
                                ("CPU_TRITON_VERSION", "CPU_NGC_TAG", "CPU_PYTHON_VERSION")):  # CPU stand-in
        assert re.fullmatch(r"\d+\.\d+\.\d+", v[triton])
        assert re.fullmatch(r"\d\d\.\d\d", v[tag])
        assert re.fullmatch(r"3\.\d+", v[python])
    assert {settings.port("http"), settings.port("grpc"), settings.port("metrics")} == {8000, 8001, 8002}


def test_malformed_line_is_named(tmp_path):
    bad = tmp_path / "versions.env"
    bad.write_text("# comment\nGOOD=1\nnot a pair\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}:3: expected KEY=VALUE, got 'not a pair'"):
        settings.parse_env_file(bad)


def test_a_package_outside_its_checkout_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "VERSIONS_FILE", tmp_path / "versions.env")
    with pytest.raises(FileNotFoundError, match=r"versions.env not found: .* `pip install -e \.`"):
        settings.versions.__wrapped__()


def test_missing_key_is_named():
    with pytest.raises(KeyError, match="no NOPE= line"):
        settings.get("NOPE")


def test_make_takes_versions_env_overrides_from_the_environment_and_the_command_line():
    """versions.env is read as KEY ?= VALUE: `HTTP_PORT=9123 make serve` is not silently ignored."""
    def serve_command(*args: str, **env: str) -> str:
        done = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "serve", *args],
                              cwd=settings.ROOT, capture_output=True, text=True, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f"--http-port {settings.get('HTTP_PORT')} " in serve_command()
    assert "--http-port 9123 " in serve_command(HTTP_PORT="9123")
    assert "--http-port 9124 " in serve_command("HTTP_PORT=9124", HTTP_PORT="9123")  # the command line wins


# versions.env key -> the PyPI project pyproject.toml (the controller's venv) pins to the same version.
SHARED_PINS = {"TORCH_VERSION": "torch", "TRANSFORMERS_VERSION": "transformers", "NUMPY_VERSION": "numpy",
               "PYTRITON_VERSION": "nvidia-pytriton"}


def test_pyproject_and_the_lock_pin_what_versions_env_pins():
    """The images read versions.env, the venv reads pyproject.toml and requirements.lock: one version each."""
    import tomllib

    def pins(lines) -> dict[str, str]:
        return {name.strip().lower(): version.strip() for name, version in
                (line.split("#")[0].split("==", 1) for line in lines if "==" in line.split("#")[0])}

    declared = pins(tomllib.loads((settings.ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    locked = pins((settings.ROOT / "requirements.lock").read_text().splitlines())
    for key, project in SHARED_PINS.items():
        want = settings.get(key)
        assert declared.get(project) == want, f"pyproject.toml pins {project}=={declared.get(project)}, versions.env {key}={want}"
        assert locked.get(project) == want, f"requirements.lock pins {project}=={locked.get(project)}, versions.env {key}={want}"


@pytest.mark.parametrize("url, grpc, metrics", [
    ("gpu1:8000", "gpu1:8001", "http://gpu1:8002/metrics"),
    ("http://10.0.0.5:8000", "10.0.0.5:8001", "http://10.0.0.5:8002/metrics"),
    ("https://triton.example/", "triton.example:8001", "http://triton.example:8002/metrics"),
    ("[::1]:8000", "[::1]:8001", "http://[::1]:8002/metrics"),
])
def test_one_function_derives_the_grpc_and_metrics_addresses(url, grpc, metrics):
    """settings.address_on is the only derivation: smoke, the Locust file, the gate's metrics and Make all
    go through it (Make's own `host:port` split took `http` for the host of http://h:8000)."""
    from tritonops.serving import metrics as metrics_module

    assert settings.address_on(url, "grpc") == grpc
    assert metrics_module.metrics_url_for(url) == metrics
    done = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "smoke", f"URL={url}"],
                          cwd=settings.ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "--grpc-url" not in done.stdout, done.stdout + done.stderr  # smoke derives it
