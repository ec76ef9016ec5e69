"""A throwaway Debian host for the Ansible end-to-end test: systemd-nspawn, its own address, SSH.

The guest boots systemd from a debootstrap rootfs (cached as a zstd tarball under .cache/testhost/,
rebuilt when missing), gets 10.213.0.2/24 and fd00:213::2/64 on a veth whose host side is 10.213.0.1
and fd00:213::1 (plus 10.213.0.3 and fd00:213::3: a second, unlisted address that firewall drills
send from, never picked as a source unless a socket binds it), reaches Debian's
archive only through an apt-cacher-ng bound to the host side, and can run Docker (pure cgroup v2
tree, keyring and bpf syscalls allowed). A reboot inside the guest (nspawn exits 133) boots it
again, so Ansible's reboot and "comes back after a reboot" can be tested.

    with TestHost() as host:            # or: python -m tritonops.testhost  (keeps it up until Ctrl-C)
        host.ssh("systemctl is-system-running --wait")
        ... ansible-playbook -i host.inventory ...
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import settings

MACHINE = "tritonops-e2e"
HOST_IF = "ve-tritonops"  # host side of the veth (--network-veth-extra names it; guest side is host0)
HOST_ADDR, GUEST_ADDR, PREFIX = "10.213.0.1", "10.213.0.2", 24
HOST_ADDR6, GUEST_ADDR6, PREFIX6 = "fd00:213::1", "fd00:213::2", 64  # ULA: private, never routed
UNLISTED_ADDR, UNLISTED_ADDR6 = "10.213.0.3", "fd00:213::3"  # host side too; no firewall lists them
APT_PROXY_PORT = 13142  # not 3142: a system apt-cacher-ng may hold that one
SUITE = settings.get("DEBIAN_SUITE")
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,sudo,iproute2"
CACHE = settings.ROOT / ".cache" / "testhost"
NSPAWN_REBOOT = 133  # systemd-nspawn's exit status when the guest asked for a reboot


class TestHostError(RuntimeError):
    """The test host could not be built or booted; the message says which step and why."""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode:
        raise TestHostError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def missing_tools() -> list[str]:
    tools = ["debootstrap", "systemd-nspawn", "apt-cacher-ng", "ssh", "ssh-keygen", "zstd", "ip"]
    return [t for t in tools if shutil.which(t) is None]


def rootfs_tarball() -> Path:
    """The cached rootfs; its name carries a hash of what debootstrap was asked for."""
    key = hashlib.sha256(f"{SUITE} {MIRROR} {PACKAGES}".encode()).hexdigest()[:12]
    return CACHE / f"rootfs-{SUITE}-{key}.tar.zst"


def build_rootfs() -> Path:
    """debootstrap the guest's rootfs once (50-90 s) and keep it as a tarball."""
    tarball = rootfs_tarball()
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="build-") as tmp:
        root = Path(tmp) / "root"
        try:
            _run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(root), MIRROR])
        finally:  # a failed debootstrap can leave /proc or /sys mounted inside the target
            for mount in reversed(Path("/proc/mounts").read_text().split("\n")):
                if len(fields := mount.split()) > 1 and fields[1].startswith(f"{root}/"):
                    subprocess.run(["umount", "-l", fields[1]], capture_output=True)
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for p in (root / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        partial = tarball.with_suffix(".partial")
        _run(["tar", "-C", str(root), "--zstd", "-cf", str(partial), "."])
        partial.rename(tarball)
    return tarball


class TestHost:
    """Boot the guest on enter, power it off and delete everything on exit (even after errors)."""

    def __init__(self, workdir: Path | None = None, boot_timeout: float = 90):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tritonops-testhost-", dir="/var/tmp"))
        self.root = self.workdir / "root"
        self.key = self.workdir / "id_ed25519"
        self.ssh_config = self.workdir / "ssh_config"
        self.inventory = self.workdir / "inventory.yml"
        self.console_log = self.workdir / "console.log"
        self.address = GUEST_ADDR
        self.boot_timeout = boot_timeout
        self.boots = 0
        self._nspawn: subprocess.Popen | None = None
        self._acng: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._booted = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._supervisor_error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "TestHost":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "TestHost":
        if missing := missing_tools():
            raise TestHostError(f"missing tools: {', '.join(missing)} (apt-get install debootstrap "
                                "systemd-container apt-cacher-ng openssh-client zstd iproute2)")
        if Path(f"/sys/class/net/{HOST_IF}").exists():
            raise TestHostError(f"{HOST_IF} already exists: another test host ({MACHINE}) is running")
        tarball = build_rootfs()
        self.root.mkdir(parents=True)
        _run(["tar", "-C", str(self.root), "--zstd", "-xf", str(tarball)])
        self._configure_rootfs()
        self._supervisor = threading.Thread(target=self._supervise, name="nspawn", daemon=True)
        self._supervisor.start()
        self.wait_for_ssh()
        self._start_apt_proxy()
        return self

    def stop(self) -> None:
        """Stop Docker inside (else poweroff takes >10 s), power off, stop the proxy, delete files."""
        if self._nspawn and self._nspawn.poll() is None:
            try:
                self.ssh("systemctl stop docker.service docker.socket", timeout=60, check=False)
            except subprocess.TimeoutExpired:
                pass
        self._stopping.set()
        if self._nspawn and self._nspawn.poll() is None:
            self._nspawn.send_signal(signal.SIGTERM)  # nspawn powers the guest off cleanly
            try:
                self._nspawn.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self._nspawn.pid, signal.SIGKILL)
                self._nspawn.wait()
        if self._supervisor:
            self._supervisor.join(timeout=10)
        if self._acng and self._acng.poll() is None:
            self._acng.terminate()
            try:
                self._acng.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._acng.kill()
                self._acng.wait()
        if Path(f"/sys/class/net/{HOST_IF}").exists():
            subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- guest -----------------------------------------------------------------------------------
    def _configure_rootfs(self) -> None:
        root = self.root
        _run(["ssh-keygen", "-A", "-f", str(root)])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tritonops-e2e", "-f", str(self.key)])
        ssh_dir = root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        (root / "etc" / "hostname").write_text(f"{MACHINE}\n")
        (root / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {MACHINE}\n")
        # No DNS and no default route: the guest reaches only the host side of its veth.
        resolv = root / "etc" / "resolv.conf"
        resolv.unlink(missing_ok=True)
        resolv.write_text("nameserver 127.0.0.1\n")
        (root / "etc" / "systemd" / "network" / "10-host0.network").write_text(
            f"[Match]\nName=host0\n\n[Network]\nAddress={GUEST_ADDR}/{PREFIX}\nAddress={GUEST_ADDR6}/{PREFIX6}\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\nIPv6DuplicateAddressDetection=0\n")
        wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")
        # The lists were emptied when the rootfs was cached: make apt's cache look stale, not fresh.
        os.utime(root / "var" / "lib" / "apt" / "lists", (0, 0))
        (root / "etc" / "apt" / "apt.conf.d" / "01proxy").write_text(
            f'Acquire::http::Proxy "http://{HOST_ADDR}:{APT_PROXY_PORT}/";\n')
        self.ssh_config.write_text(
            f"Host {MACHINE} {GUEST_ADDR}\n  HostName {GUEST_ADDR}\n  User root\n  IdentityFile {self.key}\n"
            "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
            "  LogLevel ERROR\n  ConnectTimeout 5\n")
        self.inventory.write_text(
            "gpu_hosts:\n  hosts:\n"
            f"    {MACHINE}:\n      ansible_host: {GUEST_ADDR}\n      ansible_user: root\n"
            f"      ansible_ssh_private_key_file: {self.key}\n"
            "      ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null\n")

    def _nspawn_cmd(self) -> list[str]:
        return ["systemd-nspawn", "--boot", f"--directory={self.root}", f"--machine={MACHINE}",
                # --private-network stated, not left implied: the guest's Docker must never touch the
                # host's docker0 or iptables.
                "--register=no", "--keep-unit", "--private-network", f"--network-veth-extra={HOST_IF}:host0",
                "--system-call-filter=@keyring", "--system-call-filter=bpf", "--console=pipe"]

    def _supervise(self) -> None:
        """Boot the guest; boot it again whenever it reboots (exit 133), until stop()."""
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}  # Docker inside needs pure cgroup v2
        try:
            with open(self.console_log, "ab") as log:
                while not self._stopping.is_set():
                    self._booted.clear()
                    self._nspawn = subprocess.Popen(self._nspawn_cmd(), env=env, stdin=subprocess.DEVNULL,
                                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                    self.boots += 1
                    self._configure_host_side()
                    self._booted.set()
                    if self._nspawn.wait() != NSPAWN_REBOOT:
                        break
        except BaseException as exc:  # surfaced by wait_for_ssh
            self._supervisor_error = exc
            self._booted.set()

    def _configure_host_side(self) -> None:
        deadline = time.monotonic() + 30
        while not Path(f"/sys/class/net/{HOST_IF}").exists():
            if self._nspawn.poll() is not None:
                raise TestHostError(f"systemd-nspawn exited {self._nspawn.returncode}: see {self.console_log}")
            if time.monotonic() > deadline:
                raise TestHostError(f"{HOST_IF} did not appear within 30 s")
            time.sleep(0.1)
        _run(["ip", "addr", "replace", f"{HOST_ADDR}/{PREFIX}", "dev", HOST_IF])
        _run(["ip", "addr", "replace", f"{UNLISTED_ADDR}/{PREFIX}", "dev", HOST_IF])  # secondary: never a default source
        _run(["ip", "addr", "replace", f"{HOST_ADDR6}/{PREFIX6}", "dev", HOST_IF, "nodad"])
        # Deprecated (preferred_lft 0): IPv6 picks it as a source only for sockets bound to it.
        _run(["ip", "addr", "replace", f"{UNLISTED_ADDR6}/{PREFIX6}", "dev", HOST_IF, "nodad", "preferred_lft", "0"])
        _run(["ip", "link", "set", HOST_IF, "up"])

    def _start_apt_proxy(self) -> None:
        """apt-cacher-ng on the host side of the veth; its cache survives runs under .cache/."""
        conf = self.workdir / "acng"
        conf.mkdir()
        cache = CACHE / "apt-cacher-ng"
        cache.mkdir(parents=True, exist_ok=True)
        (conf / "acng.conf").write_text(
            f"CacheDir: {cache}\nLogDir: {conf}\nPort: {APT_PROXY_PORT}\nBindAddress: {HOST_ADDR}\n"
            f"SocketPath: {conf}/socket\nPidFile: {conf}/pid\nForeGround: 1\n")
        self._acng = subprocess.Popen(["apt-cacher-ng", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                      stdout=open(conf / "stdout.log", "wb"), stderr=subprocess.STDOUT,
                                      start_new_session=True)

    # -- access ----------------------------------------------------------------------------------
    def ssh(self, command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["ssh", "-F", str(self.ssh_config), MACHINE, command], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode:
            raise TestHostError(f"ssh {MACHINE} {command!r} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def wait_for_ssh(self, min_boots: int = 1) -> None:
        """Wait until the guest (boot number >= min_boots) answers SSH and systemd is up."""
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self._supervisor_error:
                raise TestHostError(f"boot failed: {self._supervisor_error}")
            if self.boots >= min_boots and self._booted.is_set():
                if self._nspawn.poll() is not None and self._stopping.is_set():
                    raise TestHostError(f"the guest stopped: see {self.console_log}")
                try:
                    if self.ssh("systemctl is-system-running --wait", timeout=30, check=False).returncode in (0, 1):
                        return  # 1 = degraded: some unit failed, still usable
                except subprocess.TimeoutExpired:
                    pass
            time.sleep(0.5)
        tail = self.console_log.read_text(errors="replace")[-2000:] if self.console_log.exists() else ""
        raise TestHostError(f"{MACHINE} did not answer SSH within {self.boot_timeout:.0f} s; console:\n{tail}")

    def init_pid(self) -> int:
        """Host PID of the guest's init (systemd-nspawn's child): nsenter's target for its namespaces."""
        import psutil

        children = psutil.Process(self._nspawn.pid).children()
        if not children:
            raise TestHostError(f"{MACHINE} is not running")
        return children[0].pid

    def reboot(self) -> None:
        """Reboot the guest and wait until it is back (the supervisor boots it again)."""
        boots = self.boots
        self.ssh("systemctl reboot", check=False, timeout=30)
        deadline = time.monotonic() + self.boot_timeout
        while self.boots == boots:
            if time.monotonic() > deadline:
                raise TestHostError(f"{MACHINE} did not reboot within {self.boot_timeout:.0f} s")
            time.sleep(0.2)
        self.wait_for_ssh(min_boots=boots + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonops.testhost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-only", action="store_true", help="only build the cached rootfs tarball")
    args = parser.parse_args(argv)
    if args.build_only:
        print(build_rootfs())
        return 0
    def leave(signum, _frame):
        raise SystemExit(f"signal {signum}: powering {MACHINE} off")

    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started in the background (SIGINT ignored)
        signal.signal(signum, leave)
    with TestHost() as host:
        print(f"{MACHINE} is up at {host.address}: ssh -F {host.ssh_config} {MACHINE}\n"
              f"inventory: {host.inventory}\nCtrl-C (or kill -TERM {os.getpid()}) powers it off and deletes it.",
              flush=True)
        signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
