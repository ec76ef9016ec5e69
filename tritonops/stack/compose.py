"""Run the compose stack (compose/): write its env file from versions.env, then up / down / logs.

`make up`, `make down` and `make logs` call this module. The env file holds every versions.env key
(environment variables of the same name override them, as with `make up HTTP_PORT=9000`) plus what
compose needs that is derived: the host ports (HOST_HTTP_PORT... default to the container ports),
absolute paths, the rendered Prometheus config (Prometheus does not expand variables itself), Triton's
admin key (ADMIN_KEY_FILE, generated when missing, mounted as a file so that it never shows in
`docker inspect`) and the gateway's files. The env file and the gateway's files come from
tritonops.stack.hostfiles, which also renders every deployed host's (the Ansible triton role).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .. import settings
from ..models import fetch
from ..serving import adminkey, privatefile
from . import hostfiles, images, prometheus

COMPOSE_DIR = settings.ROOT / "compose"
BASE_FILE = COMPOSE_DIR / "compose.yaml"
GPU_FILE = COMPOSE_DIR / "compose.gpu.yaml"
# The alert rules, mounted beside the config (compose.yaml) and installed by the Ansible prometheus role.
ALERT_RULES = COMPOSE_DIR / "prometheus" / "alerts.yml"
STATE = settings.ROOT / ".cache" / "compose"
DEFAULT_PROJECT = "tritonops"
# The host ports and the stop margin are defined by the one renderer of a host's files (tritonops.stack.hostfiles).
HOST_PORTS = hostfiles.HOST_PORTS
STOP_MARGIN_SECS = hostfiles.STOP_MARGIN_SECS
GRAFANA_IMAGE_UID = 472  # the grafana/grafana image's own user: gets the password file when root writes it


class ComposeError(RuntimeError):
    pass


@functools.cache
def compose_command() -> tuple[str, ...]:
    """`docker compose` (v2 plugin) where it exists, else Debian's `docker-compose` (v1); COMPOSE overrides."""
    if os.environ.get("COMPOSE"):
        return tuple(os.environ["COMPOSE"].split())
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    raise ComposeError("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")


def environment(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """versions.env, overridden by same-named environment variables and then by `overrides`, completed
    by tritonops.stack.hostfiles.derive (host ports, stop grace period, image names)."""
    values = dict(settings.versions())
    values.update({k: os.environ[k] for k in [*values, *HOST_PORTS] if k in os.environ})
    values.update(overrides or {})
    repo = Path(values["MODEL_REPOSITORY"])
    values["MODEL_REPOSITORY_DIR"] = str(repo if repo.is_absolute() else settings.ROOT / repo)
    if not Path(values["MODEL_REPOSITORY_DIR"]).is_dir():
        raise ComposeError(f"MODEL_REPOSITORY={values['MODEL_REPOSITORY']}: no such directory")
    try:
        return hostfiles.derive(values)
    except hostfiles.HostFilesError as exc:
        raise ComposeError(str(exc)) from None


def render(values: dict[str, str], gateway_dir: Path) -> hostfiles.HostFiles:
    """This machine's files for one stack (tritonops.stack.hostfiles, as the Ansible role renders a host's)."""
    try:
        return hostfiles.render(values, gateway_dir=str(gateway_dir), repository=Path(values["MODEL_REPOSITORY_DIR"]))
    except hostfiles.HostFilesError as exc:
        raise ComposeError(str(exc)) from None


def write_gateway(directory: Path, values: dict[str, str]) -> dict[str, str]:
    """The gateway's config, TLS PEM and API keys in directory; returns the env keys compose mounts them from."""
    values = {"MODEL_REPOSITORY_DIR": str(settings.ROOT / values["MODEL_REPOSITORY"]), **values}
    files = render(values, directory)
    files.write_gateway(directory)
    return {k: files.env[k] for k in hostfiles.GATEWAY_FILES}


def grafana_password_file(env_file: Path) -> Path:
    return env_file.with_name(env_file.stem + ".grafana") / "admin-password"


def write_grafana_password(env_file: Path) -> dict[str, str]:
    """Grafana's admin password, generated once beside env_file (folder 0700, file 0600) and kept;
    returns the env keys compose mounts it from and runs Grafana as (the file's owner, never root)."""
    path = grafana_password_file(env_file)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    try:  # no newline: Grafana takes the file's bytes as they are
        privatefile.ensure(path, lambda: secrets.token_urlsafe(24), "Grafana's admin password")
    except privatefile.PrivateFileError as exc:
        raise ComposeError(str(exc)) from None
    info = path.stat()
    if info.st_uid == 0:  # Grafana runs as the file's owner, never as root
        try:
            os.chown(path, GRAFANA_IMAGE_UID, -1)
        except PermissionError:
            raise ComposeError(f"{path} belongs to root: sudo chown {GRAFANA_IMAGE_UID} {path}") from None
    return {"GRAFANA_ADMIN_PASSWORD": str(path), "GRAFANA_USER": str(path.stat().st_uid)}


def write_admin_key(directory: Path, values: dict[str, str]) -> dict[str, str]:
    """A copy of ADMIN_KEY_FILE's key for the container (ADMIN_KEY_MOUNT): 0644 so the container's
    triton-server user can read it, in a 0700 folder so no other host user can."""
    try:
        key = adminkey.ensure(adminkey.default_file(values["ADMIN_KEY_FILE"]))
    except adminkey.AdminKeyError as exc:
        raise ComposeError(f"ADMIN_KEY_FILE: {exc}") from None
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    mount = directory / "admin-key"
    mount.write_text(key + "\n")
    mount.chmod(0o644)
    return {"ADMIN_KEY_MOUNT": str(mount)}


def prometheus_config(values: dict[str, str]) -> str:
    """The monitoring profile's Prometheus config (tritonops.stack.prometheus, the fleet's renderer too)."""
    try:
        return prometheus.compose_config(values)
    except (KeyError, ValueError) as exc:
        raise ComposeError(f"Prometheus config: bad value ({exc!r}) in versions.env or the environment") from None


def write_env(path: Path, overrides: dict[str, str] | None = None) -> Path:
    """Write the env file, the gateway's files and the Prometheus config it points to, for one stack."""
    values = environment(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    prometheus = path.with_name(path.stem + ".prometheus.yml")
    prometheus.write_text(prometheus_config(values))
    values["PROMETHEUS_CONFIG"] = str(prometheus)
    values.update(write_admin_key(path.with_name(path.stem + ".secrets"), values))
    values.update(write_grafana_password(path))
    files = render(values, path.with_name(path.stem + ".gateway"))
    files.write(path, path.with_name(path.stem + ".gateway"))
    return path


class Stack:
    """One compose project: its name, env file and files (GPU override, monitoring profile)."""

    def __init__(self, project: str = DEFAULT_PROJECT, env_file: Path | None = None, gpu: bool = False,
                 monitoring: bool = False):
        self.project = project
        self.env_file = env_file or STATE / f"{project}.env"
        self.files = [BASE_FILE, GPU_FILE] if gpu else [BASE_FILE]
        self.monitoring = monitoring

    @property
    def env(self) -> dict[str, str]:
        """The values compose sees (the env file as written)."""
        return settings.parse_env_file(self.env_file)

    def command(self, *args: str) -> list[str]:
        cmd = [*compose_command(), "--project-name", self.project, "--env-file", str(self.env_file)]
        for f in self.files:
            cmd += ["--file", str(f)]
        if self.monitoring:
            cmd += ["--profile", "monitoring"]
        return [*cmd, *args]

    def run(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        cmd = self.command(*args)
        proc = subprocess.run(cmd, **kwargs)
        if check and proc.returncode != 0:
            raise ComposeError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}")
        return proc

    def container_ids(self, service: str | None = None) -> list[str]:
        args = ["ps", "-q"] + ([service] if service else [])
        out = self.run(*args, capture_output=True, text=True).stdout
        return out.split()

    def up(self, services: list[str] | None = None, timeout: float = 240) -> None:
        """`up -d`, then wait until every started container with a healthcheck is healthy (v1 has no --wait)."""
        self.run("up", "-d", "--scale", f"triton={self.env['TRITON_REPLICAS']}", *(services or []))
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = {cid: _state(cid) for cid in self.container_ids()}
            waiting = {cid: s for cid, s in states.items() if s.get("Health", {}).get("Status", "healthy") != "healthy"}
            stopped = {cid: s for cid, s in states.items() if s.get("Status") not in ("running", "restarting")}
            if states and not waiting and not stopped:
                return
            if time.monotonic() > deadline:
                raise ComposeError(f"project {self.project}: not healthy after {timeout:.0f}s: "
                                   + ", ".join(f"{cid[:12]} {s.get('Status')}/{s.get('Health', {}).get('Status')}"
                                               for cid, s in {**waiting, **stopped}.items())
                                   + f"\n{self.logs_tail()}")
            time.sleep(1)

    def logs_tail(self, lines: int = 40) -> str:
        proc = self.run("logs", "--no-color", "--tail", str(lines), check=False, capture_output=True, text=True)
        return proc.stdout + proc.stderr

    def down(self, volumes: bool = False) -> None:
        """Containers and networks go; the named volumes (monitoring history) stay unless volumes=True."""
        self.run("down", *(["--volumes"] if volumes else []), "--remove-orphans", "--timeout", "20")


def build_missing(gpu: bool, monitoring: bool) -> None:
    """Build every image the stack runs that is not here yet, so `make up` alone works on a fresh
    machine with an engine. The GPU image needs the NGC base pulled first (images says so)."""
    flavour = images.FLAVOURS["gpu" if gpu else "cpu"]
    if not images.image_exists(flavour.image):
        print(f"{flavour.image} is not built yet: building it (make image{' GPU=1' if gpu else ''})", flush=True)
        images.build_image(flavour)
    if not images.image_exists(images.gateway_image()):
        images.build_gateway()
    if monitoring:
        images.build_standins()


def engine_memlock_limit(image: str) -> int | None:
    """None where the engine grants an unlimited locked-memory limit (MEMLOCK_LIMIT=-1, as NVIDIA
    recommends); else the engine's own hard limit in bytes. Rootless and nested engines cannot raise
    it and runc fails with `error setting rlimit type 8`; a throwaway container of image asks."""
    probe = subprocess.run(["docker", "run", "--rm", "--network", "none", "--ulimit", "memlock=-1:-1",
                            "--entrypoint", "/bin/true", image], capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    if "rlimit type 8" not in probe.stderr:
        raise ComposeError(f"could not start a container of {image} to check the memlock limit: {probe.stderr.strip()}")
    hard = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/bash", image,
                           "-c", "ulimit -H -l"], capture_output=True, text=True)
    if hard.returncode != 0 or not hard.stdout.strip().isdigit():
        raise ComposeError(f"this engine cannot grant MEMLOCK_LIMIT=-1 and its own limit could not be read "
                           f"({hard.stderr.strip() or hard.stdout.strip()}): set MEMLOCK_LIMIT to a number of bytes")
    return int(hard.stdout) * 1024  # ulimit -l counts KiB


def memlock_override(values: dict[str, str]) -> dict[str, str]:
    """{"MEMLOCK_LIMIT": bytes} where MEMLOCK_LIMIT=-1 cannot be granted here (said on stderr), else {}."""
    if values["MEMLOCK_LIMIT"] != "-1":
        return {}  # the user chose a limit: theirs stands
    limit = engine_memlock_limit(images.gateway_image())
    if limit is None:
        return {}
    print(f"compose: this Docker engine cannot grant an unlimited locked-memory limit (MEMLOCK_LIMIT=-1; runc: "
          f"error setting rlimit type 8): using its hard limit, MEMLOCK_LIMIT={limit}. Set MEMLOCK_LIMIT to "
          "choose another.", file=sys.stderr, flush=True)
    return {"MEMLOCK_LIMIT": str(limit)}


def _state(container_id: str) -> dict:
    out = subprocess.run(["docker", "inspect", "--format", "{{json .State}}", container_id],
                         capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {"Status": "gone"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops compose", description=__doc__)
    parser.add_argument("what", choices=["env", "up", "down", "logs"])
    parser.add_argument("--gpu", action="store_true", help="add compose.gpu.yaml (NGC image, GPUs reserved)")
    parser.add_argument("--monitoring", action="store_true", help="also Prometheus and Grafana")
    parser.add_argument("--project", default=DEFAULT_PROJECT, help="compose project name")
    parser.add_argument("--volumes", action="store_true", help="down: also remove the named volumes (monitoring data)")
    args = parser.parse_args(argv)
    stack = Stack(args.project, gpu=args.gpu, monitoring=args.monitoring)
    try:
        if args.what in ("env", "up"):
            write_env(stack.env_file)
        if args.what == "up":
            if problem := fetch.ensure(Path(stack.env["MODEL_REPOSITORY_DIR"])):
                raise ComposeError(problem)
            build_missing(args.gpu, args.monitoring)
            if override := memlock_override(stack.env):
                write_env(stack.env_file, override)
            print(f"env file: {stack.env_file}")
            env = stack.env
            stack.up()
            print(f"healthy: HTTP {env['BIND_ADDRESS']}:{env['HOST_HTTP_PORT']}  gRPC {env['BIND_ADDRESS']}:"
                  f"{env['HOST_GRPC_PORT']}  metrics {env['BIND_ADDRESS']}:{env['HOST_METRICS_PORT']}\n"
                  f"statistics need header {env['ADMIN_KEY_HEADER']} with the key in "
                  f"{adminkey.default_file(env['ADMIN_KEY_FILE'])}; the other management APIs stay inside the host")
            if args.monitoring:
                print(f"Grafana: http://{env['BIND_ADDRESS']}:{env['HOST_GRAFANA_PORT']}  user admin, password in "
                      f"{env['GRAFANA_ADMIN_PASSWORD']}")
        elif args.what == "env":
            print(f"env file: {stack.env_file}")
        elif args.what == "down":
            if not stack.env_file.exists():
                write_env(stack.env_file)
            stack.down(volumes=args.volumes)
        elif args.what == "logs":
            stack.run("logs", "--follow", "--tail", "200", check=False)
    except (ComposeError, images.BuildError) as exc:
        print(f"compose: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
