"""Throwaway Debian hosts for the Ansible end-to-end tests: systemd-nspawn, own addresses, SSH.

Each guest boots systemd from a debootstrap rootfs (cached as a zstd tarball under .cache/testhost/,
rebuilt when missing), gets its own address (default 10.213.0.2/24 and fd00:213::2/64) on a veth
into its network's bridge (default tritonops-br213), shared by every guest of that network in this
process. The bridge holds the host side, 10.213.0.1 and fd00:213::1 (plus 10.213.0.3 and fd00:213::3:
a second, unlisted address that firewall drills send from, never picked as a source unless a socket
binds it), so guests reach the controller and each other. They reach Debian's archive only through
the network's apt-cacher-ng bound to 10.213.0.1, and can run Docker (pure cgroup v2 tree, keyring and
bpf syscalls allowed). A reboot inside a guest (nspawn exits 133) boots it again, so Ansible's reboot
and "comes back after a reboot" can be tested. The first guest of a network to start brings its
bridge and proxy up; the last to stop takes them down. Other networks (testhost.Network(n)) never
meet it: the fleet suite boots its guests on 10.214.0.0/24 beside the one-host suite.

    with TestHost() as host:            # or: make testhost-shell  (keeps it up until Ctrl-C)
        host.ssh("systemctl is-system-running --wait")
        ... ansible-playbook -i host.inventory ...

    with TestHost.many([TestHost.numbered("tritonops-gpu1", 11), TestHost.numbered("tritonops-gw", 13)]) as (gpu1, gw):
        ...                             # booted side by side: 10.213.0.11 and .13, fd00:213::11 and ::13
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tritonops import settings

MACHINE = "tritonops-e2e"  # the default guest's name
PREFIX, PREFIX6 = 24, 64
APT_PROXY_PORT = 13142  # not 3142: a system apt-cacher-ng may hold that one


@dataclass(frozen=True)
class Network:
    """One test network, numbered n: the bridge tritonops-brN holds the host side, 10.n.0.1 and fd00:n::1 (plus
    10.n.0.3 and fd00:n::3, unlisted), and guest number G gets 10.n.0.G and fd00:n::G. Two networks never meet, so
    two processes (make test's lanes: the one-host suite and the fleet) each boot guests on their own."""
    number: int

    def __post_init__(self) -> None:
        if not 1 <= self.number <= 255:
            raise ValueError(f"test network {self.number}: expected 1-255 (the second octet of 10.n.0.0/24)")

    @property
    def bridge(self) -> str:  # each guest's veth is a port of it (guest side: host0)
        return f"tritonops-br{self.number}"

    @property
    def bridge_mac(self) -> str:  # fixed, else the bridge takes its lowest port's MAC: guests' ARP entries go stale
        return f"02:00:0a:{self.number:02x}:00:01"

    def address(self, guest: int) -> str:
        return f"10.{self.number}.0.{guest}"

    def address6(self, guest: int) -> str:  # ULA: private, never routed
        return f"fd00:{self.number}::{guest}"

    @property
    def forward_rule(self) -> list[str]:
        # br_netfilter (bridge-nf-call-iptables=1 here) sends bridged frames through iptables FORWARD, where
        # a Docker engine on the controller sets policy DROP: this rule lets guest-to-guest traffic through.
        # (The bridge's own nf_call_iptables 0 cannot help: the kernel checks it OR the global sysctl.)
        return ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-m", "comment", "--comment", "tritonops testhost",
                "-j", "ACCEPT"]


NETWORK = Network(213)  # the default; the fleet suite boots its guests on one of its own
HOST_ADDR, GUEST_ADDR = NETWORK.address(1), NETWORK.address(2)
HOST_ADDR6, GUEST_ADDR6 = NETWORK.address6(1), NETWORK.address6(2)
UNLISTED_ADDR, UNLISTED_ADDR6 = NETWORK.address(3), NETWORK.address6(3)  # host side too; no firewall lists them
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


_build_lock = threading.Lock()  # guests booted side by side build the rootfs once


def build_rootfs() -> Path:
    """debootstrap the guest's rootfs once (50-90 s) and keep it as a tarball: once per machine, as the
    file lock holds other processes (make test's lanes) until it is there."""
    import fcntl

    CACHE.mkdir(parents=True, exist_ok=True)
    with _build_lock, open(CACHE / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_rootfs()


def _build_rootfs() -> Path:
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


def _own_cgroups() -> list[Path]:
    """This process's cgroup in each hierarchy nspawn --keep-unit reads: cgroup2 and, on hybrid
    hosts, name=systemd."""
    own = dict(line.split(":", 2)[1:] for line in Path("/proc/self/cgroup").read_text().splitlines())
    found = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, fs = line.partition(" - ")
        fstype, _, options = fs.split()[:3]
        key = "" if fstype == "cgroup2" else "name=systemd" if "name=systemd" in options.split(",") else None
        if key in own:
            found.add(Path(fields.split()[4]) / own[key].lstrip("/"))
    return sorted(found)


class _Bridge:
    """A network's bridge, its host-side addresses, the FORWARD rule and the apt proxy: one set, shared by
    the guests of that network running in this process; up with the first guest, down with the last."""

    def __init__(self, network: Network) -> None:
        self.net = network
        self.lock = threading.Lock()
        self.guests: dict[str, TestHost] = {}
        self._acng: subprocess.Popen | None = None
        self._acng_dir: Path | None = None

    def join(self, host: "TestHost") -> None:
        with self.lock:
            if host.name in self.guests:
                raise TestHostError(f"a test host named {host.name} is already running")
            taken = {a: g.name for g in self.guests.values() for a in (g.address, g.address6)}
            if clash := [a for a in (host.address, host.address6) if a in taken]:
                raise TestHostError(f"{host.name}: address {clash[0]} is taken by {taken[clash[0]]}")
            if not self.guests:
                self._up()
            self.guests[host.name] = host

    def leave(self, host: "TestHost") -> None:
        with self.lock:
            if self.guests.get(host.name) is host:
                del self.guests[host.name]
                if not self.guests:
                    self._down()

    def _up(self) -> None:
        net, bridge = self.net, self.net.bridge
        if Path(f"/sys/class/net/{bridge}").exists():
            raise TestHostError(f"{bridge} already exists and no test host of this process made it: another "
                                f"process runs test hosts on network {net.number}, or one was left over "
                                f"(remove it: ip link del {bridge})")
        try:
            _run(["ip", "link", "add", "name", bridge, "type", "bridge"])
            _run(["ip", "link", "set", "dev", bridge, "address", net.bridge_mac])
            _run(["ip", "addr", "add", f"{net.address(1)}/{PREFIX}", "dev", bridge])
            _run(["ip", "addr", "add", f"{net.address(3)}/{PREFIX}", "dev", bridge])  # secondary: never a default source
            _run(["ip", "addr", "add", f"{net.address6(1)}/{PREFIX6}", "dev", bridge, "nodad"])
            # Deprecated (preferred_lft 0): IPv6 picks it as a source only for sockets bound to it.
            _run(["ip", "addr", "add", f"{net.address6(3)}/{PREFIX6}", "dev", bridge, "nodad", "preferred_lft", "0"])
            _run(["ip", "link", "set", bridge, "up"])
            for iptables in filter(shutil.which, ("iptables", "ip6tables")):
                if subprocess.run([iptables, "-C", *net.forward_rule], capture_output=True).returncode:
                    _run([iptables, "-I", *net.forward_rule])  # (present already: left by a killed run, reused)
            self._start_apt_proxy()
        except BaseException:
            self._down()
            raise

    def _down(self) -> None:
        if self._acng and self._acng.poll() is None:
            self._acng.terminate()
            try:
                self._acng.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._acng.kill()
                self._acng.wait()
        self._acng = None
        if self._acng_dir:
            shutil.rmtree(self._acng_dir, ignore_errors=True)
            self._acng_dir = None
        for iptables in filter(shutil.which, ("iptables", "ip6tables")):
            subprocess.run([iptables, "-D", *self.net.forward_rule], capture_output=True)
        if Path(f"/sys/class/net/{self.net.bridge}").exists():
            subprocess.run(["ip", "link", "del", self.net.bridge], capture_output=True)

    def _start_apt_proxy(self) -> None:
        """apt-cacher-ng on the bridge's address; its cache (one per network: two proxies never share one)
        survives runs under .cache/."""
        self._acng_dir = conf = Path(tempfile.mkdtemp(prefix="tritonops-testnet-", dir="/var/tmp"))
        cache = CACHE / f"apt-cacher-ng-{self.net.number}"
        cache.mkdir(parents=True, exist_ok=True)
        (conf / "acng.conf").write_text(
            f"CacheDir: {cache}\nLogDir: {conf}\nPort: {APT_PROXY_PORT}\nBindAddress: {self.net.address(1)}\n"
            f"SocketPath: {conf}/socket\nPidFile: {conf}/pid\nForeGround: 1\n")
        with open(conf / "stdout.log", "wb") as log:
            self._acng = subprocess.Popen(["apt-cacher-ng", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


_bridges: dict[Network, _Bridge] = {}
_bridges_lock = threading.Lock()


def _bridge(network: Network) -> _Bridge:
    with _bridges_lock:
        return _bridges.setdefault(network, _Bridge(network))


class TestHost:
    """Boot the guest on enter, power it off and delete everything on exit (even after errors).

    name is its machine name, hostname, SSH Host entry and inventory name; address and address6 lie
    on its test network (default 10.213.0.0/24, fd00:213::/64). TestHost.numbered(name, N) picks both from N;
    TestHost.many(hosts) boots several side by side."""

    def __init__(self, name: str = MACHINE, address: str = GUEST_ADDR, address6: str = GUEST_ADDR6,
                 workdir: Path | None = None, boot_timeout: float = 90, network: Network = NETWORK):
        self.name, self.address, self.address6, self.network = name, address, address6, network
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"tritonops-testhost-{name}-", dir="/var/tmp"))
        self.root = self.workdir / "root"
        self.key = self.workdir / "id_ed25519"
        self.ssh_config = self.workdir / "ssh_config"
        self.inventory = self.workdir / "inventory.yml"
        self.console_log = self.workdir / "console.log"
        self.boot_timeout = boot_timeout
        self.boots = 0
        self._nspawn: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._booted = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._supervisor_error: BaseException | None = None

    @classmethod
    def numbered(cls, name: str, number: int, network: Network = NETWORK, **kwargs) -> "TestHost":
        """Guest number N of a test network: 10.n.0.N and fd00:n::N (1 and 3 are the host's)."""
        if number in (1, 3) or not 2 <= number <= 254:
            raise ValueError(f"{name}: guest number {number} must be 2 or 4-254 (1 and 3 are the host side's)")
        return cls(name, network.address(number), network.address6(number), network=network, **kwargs)

    @staticmethod
    @contextlib.contextmanager
    def many(hosts: Sequence["TestHost"]) -> Iterator[list["TestHost"]]:
        """Boot several guests at once (their boots overlap); stop them all on exit, even after errors."""
        hosts = list(hosts)
        try:
            with ThreadPoolExecutor(len(hosts), thread_name_prefix="testhost") as pool:
                for started in [pool.submit(host.start) for host in hosts]:
                    started.result()  # the first failure, once every start has returned
            yield hosts
        finally:
            with ThreadPoolExecutor(len(hosts), thread_name_prefix="testhost") as pool:
                list(pool.map(TestHost.stop, hosts))

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
        tarball = build_rootfs()
        _bridge(self.network).join(self)
        self.root.mkdir(parents=True)
        _run(["tar", "-C", str(self.root), "--zstd", "-xf", str(tarball)])
        self._configure_rootfs()
        self._supervisor = threading.Thread(target=self._supervise, name=f"nspawn-{self.name}", daemon=True)
        self._supervisor.start()
        self.wait_for_ssh()
        return self

    def stop(self) -> None:
        """Kill the guest's containers and stop its Docker, power off, leave the network (the last
        guest takes the bridge and the proxy down), delete files. Safe to call more than once.

        The containers go first: the deployed Docker has live-restore, so stopping it leaves them
        running, and a serving Triton then held the poweroff until nspawn's 60 s limit (measured: 64 s
        with a container that ignores SIGTERM, 6 s with `docker kill` first)."""
        if self._nspawn and self._nspawn.poll() is None:
            try:
                self.ssh("if command -v docker >/dev/null; then docker ps -q | xargs -r docker kill >/dev/null; fi; "
                         "systemctl stop docker.service docker.socket", timeout=60, check=False)
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
        _bridge(self.network).leave(self)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- guest -----------------------------------------------------------------------------------
    def _configure_rootfs(self) -> None:
        root = self.root
        _run(["ssh-keygen", "-A", "-f", str(root)])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(self.key)])
        ssh_dir = root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        (root / "etc" / "hostname").write_text(f"{self.name}\n")
        (root / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n")
        # No DNS and no default route: the guest reaches only the test network (the host side, other guests).
        resolv = root / "etc" / "resolv.conf"
        resolv.unlink(missing_ok=True)
        resolv.write_text("nameserver 127.0.0.1\n")
        (root / "etc" / "systemd" / "network" / "10-host0.network").write_text(
            f"[Match]\nName=host0\n\n[Network]\nAddress={self.address}/{PREFIX}\nAddress={self.address6}/{PREFIX6}\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\nIPv6DuplicateAddressDetection=0\n")
        wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")
        # The lists were emptied when the rootfs was cached: make apt's cache look stale, not fresh.
        os.utime(root / "var" / "lib" / "apt" / "lists", (0, 0))
        (root / "etc" / "apt" / "apt.conf.d" / "01proxy").write_text(
            f'Acquire::http::Proxy "http://{self.network.address(1)}:{APT_PROXY_PORT}/";\n')
        self.ssh_config.write_text(
            f"Host {self.name} {self.address}\n  HostName {self.address}\n  User root\n  IdentityFile {self.key}\n"
            "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
            "  LogLevel ERROR\n  ConnectTimeout 5\n")
        # JSON is YAML: Ansible reads it as the inventory file it is.
        self.inventory.write_text(json.dumps({"gpu_hosts": {"hosts": {self.name: self.inventory_vars()}}}, indent=2))

    def inventory_vars(self) -> dict[str, str]:
        """How Ansible reaches this guest: its inventory host variables (a fleet's inventory uses them too)."""
        return {"ansible_host": self.address, "ansible_user": "root", "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"}

    def _nspawn_cmd(self) -> list[str]:
        return ["systemd-nspawn", "--boot", f"--directory={self.root}", f"--machine={self.name}",
                # --private-network stated, not left implied: the guest's Docker must never touch the
                # host's docker0 or iptables.
                "--register=no", "--keep-unit", "--private-network", f"--network-bridge={self.network.bridge}",
                "--system-call-filter=@keyring", "--system-call-filter=bpf", "--console=pipe"]

    def _supervise(self) -> None:
        """Boot the guest; boot it again whenever it reboots (exit 133), until stop()."""
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}  # Docker inside needs pure cgroup v2
        # nspawn --keep-unit puts the guest in <its own cgroup>/payload: started from one cgroup, all
        # guests' systemds would share one tree (seen: three inits in /payload/init.scope, one guest
        # degraded). So each nspawn starts from a cgroup of its own, removed once it has exited.
        cgroups = [parent / self.workdir.name for parent in _own_cgroups()]
        enter = "".join(f"echo $$ > {shlex.quote(str(cg / 'cgroup.procs'))} && " for cg in cgroups)
        try:
            for cg in cgroups:
                cg.mkdir()
            with open(self.console_log, "ab") as log:
                while not self._stopping.is_set():
                    self._booted.clear()
                    self._nspawn = subprocess.Popen(["sh", "-c", f'{enter}exec "$@"', "sh", *self._nspawn_cmd()],
                                                    env=env, stdin=subprocess.DEVNULL, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True)
                    self.boots += 1
                    self._booted.set()
                    if self._nspawn.wait() != NSPAWN_REBOOT:
                        break
        except BaseException as exc:  # surfaced by wait_for_ssh
            self._supervisor_error = exc
            self._booted.set()
        finally:
            for cg in cgroups:  # empty now: the guest's processes died with its init
                for sub, _, _ in os.walk(cg, topdown=False):
                    with contextlib.suppress(OSError):
                        os.rmdir(sub)

    # -- access ----------------------------------------------------------------------------------
    def ssh(self, command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["ssh", "-F", str(self.ssh_config), self.name, command], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode:
            raise TestHostError(f"ssh {self.name} {command!r} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def wait_for_ssh(self, min_boots: int = 1) -> None:
        """Wait until the guest (boot number >= min_boots) answers SSH and systemd is up."""
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self._supervisor_error:
                raise TestHostError(f"boot failed: {self._supervisor_error}")
            if self._supervisor and not self._supervisor.is_alive():
                raise TestHostError(f"{self.name} stopped (systemd-nspawn exited {self._nspawn.returncode}): "
                                    f"see {self.console_log}")
            if self.boots >= min_boots and self._booted.is_set():
                try:
                    if self.ssh("systemctl is-system-running --wait", timeout=30, check=False).returncode in (0, 1):
                        return  # 1 = degraded: some unit failed, still usable
                except subprocess.TimeoutExpired:
                    pass
            time.sleep(0.5)
        tail = self.console_log.read_text(errors="replace")[-2000:] if self.console_log.exists() else ""
        raise TestHostError(f"{self.name} did not answer SSH within {self.boot_timeout:.0f} s; console:\n{tail}")

    def init_pid(self) -> int:
        """Host PID of the guest's init (systemd-nspawn's child): nsenter's target for its namespaces."""
        import psutil

        children = psutil.Process(self._nspawn.pid).children()
        if not children:
            raise TestHostError(f"{self.name} is not running")
        return children[0].pid

    def reboot(self) -> None:
        """Reboot the guest and wait until it is back (the supervisor boots it again)."""
        boots = self.boots
        self.ssh("systemctl reboot", check=False, timeout=30)
        deadline = time.monotonic() + self.boot_timeout
        while self.boots == boots:
            if time.monotonic() > deadline:
                raise TestHostError(f"{self.name} did not reboot within {self.boot_timeout:.0f} s")
            time.sleep(0.2)
        self.wait_for_ssh(min_boots=boots + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests/ansible/testhost.py", description=__doc__,
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
        print(f"{host.name} is up at {host.address}: ssh -F {host.ssh_config} {host.name}\n"
              f"inventory: {host.inventory}\nCtrl-C (or kill -TERM {os.getpid()}) powers it off and deletes it.",
              flush=True)
        signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
