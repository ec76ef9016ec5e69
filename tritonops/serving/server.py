"""Run the real tritonserver bundled in the nvidia-pytriton wheel on this machine's CPU.

Used by `make serve` (foreground, logs to the terminal) and by the tests (background, logs to a
file). The server runs in its own process group so that stopping it also reaps the Python
backend stubs it forked (a plain SIGTERM was seen to leave `triton_python_backend_stub` behind).
"""
from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .. import settings
from ..models import fetch
from . import adminkey

CACHE = settings.ROOT / ".cache"
STOP_GRACE_S = 10  # server gets --exit-timeout-secs below this, then the group is killed


def die_with_parent() -> list[str]:
    """A command prefix that SIGKILLs the server when the process that started it dies: util-linux's
    setpriv sets the parent-death signal and execs the server (same PID). The server runs in its own
    session (so stop() can reap its group), so nothing else would end it if a test run or `tritonops
    serve` were killed outright; its stubs exit when it does. Not preexec_fn: unsafe beside threads.
    Without setpriv (not util-linux) the server just outlives a killed parent."""
    return ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


class ServerError(RuntimeError):
    """The server could not be started; the message says why (Triton's own reason when it has one)."""


def triton_home() -> Path:
    import pytriton

    home = Path(pytriton.__file__).parent / "tritonserver"
    if not (home / "bin" / "tritonserver").exists():
        raise ServerError(f"no tritonserver binary under {home}: is nvidia-pytriton installed?")
    return home


def backend_directory() -> Path:
    """A backends/ folder whose python/ holds the wheel's backend plus the stub for this Python.

    The backend looks for triton_python_backend_stub beside libtriton_python.so; the wheel keeps
    one stub per Python version elsewhere, so link the right one in a folder of our own.
    """
    home = triton_home()
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = home / "python_backend_stubs" / pyver / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerError(f"the wheel has no Python backend stub for Python {pyver} ({stub})")
    missing = [l.split()[0] for l in _ldd(stub) if "not found" in l]
    if missing:  # without libpython the model load hangs until the stub times out: say so up front
        raise ServerError(f"the Python backend stub cannot find {', '.join(missing)} "
                          f"(on Debian/Ubuntu: apt-get install libpython{pyver})")
    target = CACHE / "triton-backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in [*(home / "backends" / "python").glob("*.*"), stub]:
        link = target / src.name
        if not (link.is_symlink() and link.resolve() == src.resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(src)
    return target.parent


def _ldd(path: Path) -> list[str]:
    return subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout.splitlines()


def stub_python_bin() -> Path:
    """The bin/ folder whose python3 the Python backend stub should find first on PATH.

    The stub runs an isolated interpreter (environment variables ignored) that takes its prefix from
    the first python3 on PATH: normally this venv's, whose pyvenv.cfg adds the venv's site-packages.
    But the stub links the system's libpython3.X (Debian's 3.11.2 here): on a venv built from another
    build of 3.X (pyenv's 3.11.7 on this box) it would load that build's C modules, and `import ssl`
    (transformers needs it) fails with an undefined symbol. Then a venv-shaped folder under .cache pairs
    the libpython's own python3.X with this venv's site-packages (same 3.X ABI)."""
    venv_bin = Path(sys.executable).parent
    stub = backend_directory() / "python" / "triton_python_backend_stub"
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    for line in _ldd(stub):
        name, _, target = line.strip().partition(" => ")
        if not (name.startswith("libpython") and target):
            continue
        prefix = Path(os.path.realpath(target.split()[0])).parent
        while prefix != prefix.parent and prefix.name != "lib":
            prefix = prefix.parent
        home = prefix.parent
        python = home / "bin" / f"python{pyver}"
        if Path(sys.base_prefix).resolve() == home.resolve() or not python.is_file():
            return venv_bin
        shim = CACHE / "triton-python"
        site = shim / "lib" / f"python{pyver}" / "site-packages"
        for folder in (shim / "bin", site.parent):
            folder.mkdir(parents=True, exist_ok=True)
        (shim / "pyvenv.cfg").write_text(f"home = {python.parent}\ninclude-system-site-packages = false\n")
        for link, src in ((shim / "bin" / "python3", python), (site, Path(sysconfig.get_paths()["purelib"]))):
            if not (link.is_symlink() and link.resolve() == src.resolve()):
                link.unlink(missing_ok=True)
                link.symlink_to(src)
        return shim / "bin"
    return venv_bin


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port_free(host: str, port: int, role: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ServerError(f"{role} port {port} on {host} is already in use ({exc.strerror}); "
                              f"stop what holds it or pick another port") from None


def listening(pid: int) -> dict[int, str]:
    """{port: address} of a process's listening TCP sockets ({} once it has gone)."""
    import psutil

    try:
        return {c.laddr.port: c.laddr.ip for c in psutil.Process(pid).net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN}
    except psutil.Error:
        return {}


class LoopbackUrls:
    """Where something started here answers: its ports dict (http, grpc, metrics) on 127.0.0.1."""

    ports: dict[str, int]

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"


class LocalServer(LoopbackUrls):
    """tritonserver on given ports; a context manager that starts it and waits for READY.

    Secure by default: it listens on loopback only, and the management APIs (versions.env
    RESTRICTED_APIS) need the admin key from admin_key_file (default ADMIN_KEY_FILE, generated when
    missing); restricted=False opens them.
    """

    def __init__(self, repository: Path = settings.MODEL_REPOSITORY, *, http_port: int | None = None,
                 grpc_port: int | None = None, metrics_port: int | None = None, host: str = "127.0.0.1",
                 log_path: Path | None = None, extra_args: list[str] | None = None, ready_timeout: float = 120,
                 restricted: bool = True, admin_key_file: Path | None = None):
        self.repository = Path(repository).resolve()
        self.host = host
        self.admin_key_file = Path(admin_key_file) if admin_key_file else adminkey.default_file()
        self.admin_key = adminkey.ensure(self.admin_key_file) if restricted else None
        self.ports = {"http": http_port or settings.port("http"), "grpc": grpc_port or settings.port("grpc"),
                      "metrics": metrics_port or settings.port("metrics")}
        self.log_path = log_path
        self.extra_args = extra_args or []
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=400)
        self._pump: threading.Thread | None = None

    def command(self) -> list[str]:
        return [
            str(triton_home() / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_directory()}",
            f"--http-address={self.host}", f"--http-port={self.ports['http']}",
            f"--grpc-address={self.host}", f"--grpc-port={self.ports['grpc']}",
            f"--metrics-address={self.host}", f"--metrics-port={self.ports['metrics']}",
            # CPU-only host: no GPU metrics or pinned memory, less noise.
            "--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0",
            f"--exit-timeout-secs={STOP_GRACE_S // 2}",
            *(adminkey.server_args(self.admin_key) if self.admin_key else []),
            *self.extra_args,
        ]

    def admin_headers(self, protocol: str = "http") -> dict[str, str]:
        """Headers (protocol "grpc": metadata) that open the restricted APIs; {} when they are open."""
        return adminkey.headers(self.admin_key, protocol) if self.admin_key else {}

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The backend stub runs model.py with the first python3 on PATH (it ignores PYTHONPATH and the
        # like): this venv's, with torch and transformers (stub_python_bin says why it may be a shim).
        env["PATH"] = os.pathsep.join(dict.fromkeys([str(stub_python_bin()), str(Path(sys.executable).parent), env.get("PATH", "")]))
        return env

    def start(self) -> "LocalServer":
        from ..models import validate  # clear per-field errors beat Triton's first-failure-only log

        # Not the descriptors: serving a model comes before `tritonops contract` describes it.
        problems = validate.validate_repository(self.repository, descriptors=False)
        if problems:
            raise ServerError("invalid model repository:\n" + "\n".join(f"  {p}" for p in problems))
        for role, port in self.ports.items():
            check_port_free(self.host, port, role.upper() if role != "metrics" else "metrics")

        sink = open(self.log_path, "w") if self.log_path else None
        self.proc = subprocess.Popen([*die_with_parent(), *self.command()], env=self.environment(),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, start_new_session=True)
        self._pump = threading.Thread(target=self._copy_output, args=(sink,), daemon=True)
        self._pump.start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _copy_output(self, sink) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self._tail.append(line.rstrip("\n"))
            if sink:
                sink.write(line)
                sink.flush()
            else:
                sys.stdout.write(line)
                sys.stdout.flush()
        if sink:
            sink.close()

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def _wait_ready(self) -> None:
        """HTTP says ready and each of the three ports listens: Triton answers ready over HTTP before its
        metrics listener is up at times (a test read the sockets right after READY and one was missing)."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if self._pump:
                    self._pump.join(timeout=5)
                raise ServerError(f"tritonserver exited with code {self.proc.returncode} before it was ready:\n"
                                  + self.failure_reason())
            if self._get("/v2/health/ready") == 200 and set(self.ports.values()) <= listening(self.proc.pid).keys():
                return
            time.sleep(0.2)
        raise ServerError(f"tritonserver not ready after {self.ready_timeout:.0f}s:\n" + self.failure_reason())

    def failure_reason(self) -> str:
        """Triton's own error lines (E-level log lines and failed model table rows)."""
        lines = [l for l in self._tail if l.startswith("E") or "UNAVAILABLE" in l or "error" in l.lower()]
        return "\n".join(f"  {l}" for l in (lines or list(self._tail)[-20:]))

    def descendants(self) -> list[int]:
        """PIDs still in the server's process group (stubs included)."""
        import psutil

        if not self.proc:
            return []
        return [p.pid for p in psutil.process_iter() if _pgid(p.pid) == self.proc.pid]

    def stop(self) -> int | None:
        """SIGINT for a graceful unload, then SIGKILL to the whole group; returns the exit code."""
        if not self.proc:
            return None
        pgid = self.proc.pid
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pgid, signal.SIGKILL)  # stubs and anything else left in the group
        except ProcessLookupError:
            pass
        self.proc.wait()
        deadline = time.monotonic() + 5
        while self.descendants() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._pump:
            self._pump.join(timeout=5)
        return self.proc.returncode

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(repository: Path, http_port: int, grpc_port: int, metrics_port: int, host: str,
          admin_key_file: Path | None = None) -> int:
    """Foreground server like `docker compose up`: logs to the terminal, Ctrl-C/SIGTERM stop it."""
    try:
        server = LocalServer(repository, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                             host=host, admin_key_file=admin_key_file)
    except adminkey.AdminKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    problem = fetch.ensure(repository)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        server.start()
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    print(f"\nTriton is READY, serving {repository} (listening on {host})\n"
          f"  HTTP     http://{shown}:{http_port}  (e.g. /v2/models/<model>/infer; make smoke sends every model's samples)\n"
          f"  gRPC     {shown}:{grpc_port}\n"
          f"  metrics  http://{shown}:{metrics_port}/metrics\n"
          f"Management APIs ({settings.get('RESTRICTED_APIS')}) need header {adminkey.header()}: the key is in "
          f"{server.admin_key_file}\n"
          f"  curl -H \"{adminkey.header()}: $(cat {server.admin_key_file})\" http://{shown}:{http_port}/v2/models/stats\n"
          f"Ctrl-C to stop.\n", flush=True)
    while not stop.is_set() and server.proc.poll() is None:
        stop.wait(0.5)
    crashed = server.proc.poll() is not None
    print("stopping tritonserver...", flush=True)
    code = server.stop()
    left = server.descendants()
    if left:
        print(f"error: processes left behind: {left}", file=sys.stderr)
        return 1
    if crashed:
        print(f"error: tritonserver exited on its own with code {code}", file=sys.stderr)
        return 1
    print("stopped.", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="tritonops serve", description=serve.__doc__)
    parser.add_argument("--repository", type=Path, default=settings.MODEL_REPOSITORY)
    parser.add_argument("--host", default=settings.get("BIND_ADDRESS"),
                        help="address HTTP, gRPC and metrics listen on (default versions.env BIND_ADDRESS: loopback)")
    parser.add_argument("--admin-key-file", type=Path, default=adminkey.default_file(),
                        help="admin key for the restricted management APIs (default versions.env ADMIN_KEY_FILE; "
                             "generated when missing)")
    parser.add_argument("--http-port", type=int, default=settings.port("http"))
    parser.add_argument("--grpc-port", type=int, default=settings.port("grpc"))
    parser.add_argument("--metrics-port", type=int, default=settings.port("metrics"))
    a = parser.parse_args(argv)
    return serve(a.repository, a.http_port, a.grpc_port, a.metrics_port, a.host, a.admin_key_file)
