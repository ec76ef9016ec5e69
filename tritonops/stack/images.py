"""Build the server images: the Debian base, the CPU Triton base, the project image, its wheels.

`make base-image`, `make lock-images`, `make wheels`, `make image`, `make image-tarball` (the project
image and the gateway's, one tarball each) and `make standin-images` call this module. Names and
versions come from versions.env. Builds use the classic builder and need no registry: the Debian
base is made with debootstrap, every Python package comes from images/wheels/<flavour>/, installed
with pip --require-hashes from the flavour's committed lock (images/requirements-<flavour>.txt).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from .. import settings
from ..models import fetch

IMAGES = settings.ROOT / "images"
WHEELS = IMAGES / "wheels"
CERTS = IMAGES / "certs"  # git-ignored; filled from the host at build time, used in build stages only
HOST_CERTS = Path("/usr/local/share/ca-certificates")
CACHE = settings.ROOT / ".cache" / "images"
# glibc 2.35 (NGC's Ubuntu 22.04) and 2.36 (bookworm) run manylinux_2_35 and older; pip takes
# --platform literally, so every older tag is listed.
PLATFORMS = (*(f"manylinux_2_{minor}_x86_64" for minor in range(35, 4, -1)), "manylinux2014_x86_64",
             "manylinux2010_x86_64", "manylinux1_x86_64")


@dataclasses.dataclass(frozen=True)
class Flavour:
    name: str
    python: str  # the base image's python3: pip locks and downloads wheels for it
    triton: str  # the Triton release the base carries (the image's com.nvidia.tritonserver.version)
    tag: str     # the NGC release that Triton ships as: the image is tagged <tag>-<name>
    base: str    # BASE_IMAGE of images/Dockerfile

    @property
    def image(self) -> str:
        return image_ref(settings.versions(), self.name)

    @property
    def wheels(self) -> Path:
        return WHEELS / self.name

    @property
    def lock(self) -> Path:
        """The hashed lock of the project image's pip install (make lock-images writes it)."""
        return IMAGES / f"requirements-{self.name}.txt"


# The one place image references are built: Flavour.image, the env file compose reads
# (tritonops.stack.compose: TRITON_IMAGE_CPU, TRITON_IMAGE_GPU, TRITON_GATEWAY_IMAGE) and Ansible's group_vars
# (`python -m tritonops.stack.images refs`) all come from these two.
def image_ref(values: dict[str, str], flavour: str) -> str:
    """<IMAGE_REPO>:<NGC_TAG>-gpu or <IMAGE_REPO>:<CPU_NGC_TAG>-cpu, from versions.env-shaped values."""
    return f"{values['IMAGE_REPO']}:{values['NGC_TAG' if flavour == 'gpu' else 'CPU_NGC_TAG']}-{flavour}"


def gateway_ref(values: dict[str, str]) -> str:
    return f"{values['GATEWAY_IMAGE']}:{values['HAPROXY_VERSION']}"


def debian_base() -> str:
    return f"{settings.get('DEBIAN_BASE_IMAGE')}:{settings.get('DEBIAN_SUITE')}"


def cpu_base() -> str:
    return f"{settings.get('CPU_BASE_IMAGE')}:{settings.get('CPU_NGC_TAG')}"


def gateway_image() -> str:
    return gateway_ref(settings.versions())


def ngc_base() -> str:
    return f"{settings.get('NGC_IMAGE')}:{settings.get('NGC_TAG')}-py3"


# GPU: the patched NGC release (TRITON_VERSION, NGC_TAG; Ubuntu 24.04's Python). CPU: the stand-in,
# Debian bookworm's Python with the nvidia-pytriton wheel's Triton (CPU_TRITON_VERSION, CPU_NGC_TAG).
FLAVOURS = {
    "cpu": Flavour("cpu", settings.get("CPU_PYTHON_VERSION"), settings.get("CPU_TRITON_VERSION"),
                   settings.get("CPU_NGC_TAG"), cpu_base()),
    "gpu": Flavour("gpu", settings.get("NGC_PYTHON_VERSION"), settings.get("TRITON_VERSION"),
                   settings.get("NGC_TAG"), ngc_base()),
}
# The CPU base's own pip install (the nvidia-pytriton wheel, --no-deps) has a lock of its own.
CPU_BASE_LOCK = IMAGES / "requirements-cpu-base.txt"


class BuildError(RuntimeError):
    pass


def _run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, check=True, **kwargs)
    except FileNotFoundError:
        raise BuildError(f"{cmd[0]} is not installed (see docs/compose.md)") from None
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"{cmd[0]} failed with exit code {exc.returncode}") from None


def image_exists(ref: str) -> bool:
    if not shutil.which("docker"):
        raise BuildError("the docker CLI is not installed (apt-get install docker.io)")
    return subprocess.run(["docker", "image", "inspect", ref], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def _timed(what: str):
    start = time.monotonic()

    def done() -> None:
        print(f"{what}: {time.monotonic() - start:.0f}s", flush=True)
    return done


def build_debian_base(force: bool = False) -> str:
    """debootstrap a minimal bookworm and `docker import` it: no registry needed."""
    ref = debian_base()
    if image_exists(ref) and not force:
        print(f"{ref}: present (--force rebuilds)")
        return ref
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root: run `sudo make base-image`")
    done = _timed(f"debian base {ref}")
    suite, mirror = settings.get("DEBIAN_SUITE"), os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
    root = CACHE / f"rootfs-{suite}"
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run(["debootstrap", "--variant=minbase", suite, str(root), mirror])
        security = mirror.replace("/debian", "/debian-security")
        (root / "etc/apt/sources.list").write_text(
            f"deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\ndeb {security} {suite}-security main\n")
        # Like the official slim images: no translations, recommends, docs or locales, and no apt
        # caches left in layers (pkgcache.bin alone is ~40 MB).
        (root / "etc/apt/apt.conf.d/90tritonops").write_text(
            'Acquire::Languages "none";\nAPT::Install-Recommends "false";\n'
            'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
            'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n')
        (root / "etc/dpkg/dpkg.cfg.d/90tritonops").write_text(
            "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
            "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\n")
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives", "var/cache/apt"):
            for entry in (root / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        _run(["docker", "import", "--change", 'CMD ["/bin/bash"]', "-", ref], stdin=tar.stdout)
        if tar.wait() != 0:
            raise BuildError(f"tar of {root} failed")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    done()
    return ref


def stage_certs() -> list[str]:
    """Copy the host's extra CAs into the (git-ignored) build context; build stages trust them."""
    shutil.rmtree(CERTS, ignore_errors=True)
    CERTS.mkdir(parents=True)
    names = []
    for crt in sorted(HOST_CERTS.glob("*.crt")) if HOST_CERTS.is_dir() else []:
        shutil.copy(crt, CERTS / crt.name)
        names.append(crt.name)
    return names


def wheel_pins() -> list[str]:
    return [f"torch=={settings.get('TORCH_VERSION')}", f"transformers=={settings.get('TRANSFORMERS_VERSION')}",
            f"numpy=={settings.get('NUMPY_VERSION')}"]


def _target(flavour: Flavour) -> list[str]:
    """pip options that pick wheels for the base image's CPython and platform, not this machine's."""
    return ["--only-binary=:all:", *(f"--platform={p}" for p in PLATFORMS), "--python-version", flavour.python,
            "--implementation", "cp", "--abi", f"cp{flavour.python.replace('.', '')}"]


def _locks(flavour: Flavour) -> list[Path]:
    return [flavour.lock, CPU_BASE_LOCK] if flavour.name == "cpu" else [flavour.lock]


def _resolve(flavour: Flavour, pins: list[str], deps: bool = True) -> list[tuple[str, str, str, str]]:
    """(name, version, sha256, file name) of every wheel pip would install for the flavour's base.

    pip's own resolver in --dry-run with --report: it reads the wheels' metadata (PEP 658) and the
    index's sha256 without downloading them, for the target Python and platform (pip-compile can
    only resolve for the interpreter it runs on)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--dry-run",
              "--ignore-installed", "--report", str(report), "--target", str(Path(tmp) / "target"),
              *_target(flavour), *([] if deps else ["--no-deps"]), *pins])
        found = []
        for item in json.loads(report.read_text())["install"]:
            url = item["download_info"]["url"]
            digest = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
            if not digest and url.startswith("file://"):  # a find-links file: no index to give a hash
                with open(urllib.parse.unquote(urllib.parse.urlparse(url).path), "rb") as wheel:
                    digest = hashlib.file_digest(wheel, "sha256").hexdigest()
            if not digest:
                raise BuildError(f"pip gave no sha256 for {url}")
            found.append((item["metadata"]["name"], item["metadata"]["version"], digest, url.rsplit("/", 1)[-1]))
    return sorted(found, key=lambda row: canonicalize_name(row[0]))


def _write_lock(path: Path, flavour: Flavour, what: str, rows: list[tuple[str, str, str, str]]) -> None:
    lines = [f"# {path.relative_to(settings.ROOT)}: {what} for CPython {flavour.python}, manylinux x86_64",
             f"# (the {flavour.name} image's base). Generated by `make lock-images` from versions.env; do not edit.",
             "# Every wheel the install takes, with its sha256: installed with pip --require-hashes --no-deps."]
    for name, version, digest, filename in rows:
        lines += [f"{name}=={version} \\", f"    --hash=sha256:{digest}", f"    # {urllib.parse.unquote(filename)}"]
    path.write_text("\n".join(lines) + "\n")
    print(f"{path}: {len(rows)} wheels")


def lock(flavour: Flavour) -> list[Path]:
    """Write the flavour's hashed lock(s): the project image's packages (and the CPU base's wheel)."""
    _write_lock(flavour.lock, flavour, "torch, transformers, numpy and their dependencies",
                _resolve(flavour, wheel_pins()))
    if flavour.name == "cpu":
        _write_lock(CPU_BASE_LOCK, flavour, "the nvidia-pytriton wheel (its Triton only, no Python deps)",
                    _resolve(flavour, [f"nvidia-pytriton=={settings.get('PYTRITON_VERSION')}"], deps=False))
    return _locks(flavour)


def read_lock(path: Path) -> dict[str, str]:
    """{canonical name: version} of a lock; BuildError when a pin has no hash."""
    pins: dict[str, str] = {}
    if not path.exists():
        raise BuildError(f"{path.relative_to(settings.ROOT)} is missing: run `make lock-images`")
    for entry in path.read_text().replace("\\\n", " ").splitlines():
        entry = entry.split(" #", 1)[0].strip()
        if not entry or entry.startswith("#"):
            continue
        pin, _, rest = entry.partition(" ")
        name, _, version = pin.partition("==")
        if not version or "--hash=sha256:" not in rest:
            raise BuildError(f"{path.relative_to(settings.ROOT)}: {entry!r} is not `name==version --hash=sha256:…`")
        pins[canonicalize_name(name)] = version
    return pins


def check_lock(flavour: Flavour) -> None:
    """The committed locks pin what versions.env pins (a local label such as +cpu aside)."""
    wanted = wheel_pins() + ([f"nvidia-pytriton=={settings.get('PYTRITON_VERSION')}"] if flavour.name == "cpu" else [])
    locked = {}
    for path in _locks(flavour):
        locked.update(read_lock(path))
    for pin in wanted:
        name, _, version = pin.partition("==")
        have = locked.get(canonicalize_name(name))
        if have is None or Version(have).public != Version(version).public:
            raise BuildError(f"{flavour.lock.name} (or the CPU base's lock) pins {name}=={have}, versions.env "
                             f"{version}: run `make lock-images`")


def download_wheels(flavour: Flavour) -> Path:
    """`pip download` exactly the locked wheels (hashes checked) for the base's Python and platform."""
    check_lock(flavour)
    done = _timed(f"wheels for {flavour.name}")
    shutil.rmtree(flavour.wheels, ignore_errors=True)  # no stale pins left behind in the context
    flavour.wheels.mkdir(parents=True)
    for path in _locks(flavour):
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--require-hashes",
              "--no-deps", *_target(flavour), "--dest", str(flavour.wheels), "-r", str(path)])
    done()
    return flavour.wheels


def have_locked_wheels(flavour: Flavour, path: Path) -> bool:
    """Every wheel the lock names is in wheels/<flavour>/ (by name and version; pip checks the hashes)."""
    present = set()
    for wheel in flavour.wheels.glob("*.whl"):
        name, version, *_ = parse_wheel_filename(wheel.name)
        present.add((name, str(version)))
    return all((name, str(Version(v))) in present for name, v in read_lock(path).items())


# Files the project image's Dockerfile COPYs besides its wheels: {name in the context: file here}.
# The liveness supervisor (it reads the models' checks from the mounted repository).
PROJECT_FILES = {"triton-supervisor.py": IMAGES / "triton-supervisor.py"}


def _context(dockerfile: Path, wheels: list[Path], lock: Path | None = None,
             files: dict[str, Path] | None = None) -> bytes:
    """A build context with only what the Dockerfile uses: itself, certs/, the wheels it installs,
    their hashed lock (as requirements.txt) and `files` ({name in the context: path})."""
    buf = io.BytesIO()
    # GNU format: the CLI sniffs stdin's first 512 bytes, and a PAX header there reads as a Dockerfile.
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(dockerfile, arcname="Dockerfile")
        if lock:
            tar.add(lock, arcname="requirements.txt")
        tar.add(CERTS, arcname="certs")
        tar.add(WHEELS, arcname="wheels", recursive=False)
        for wheel in wheels:
            tar.add(wheel, arcname=f"wheels/{wheel.name}")
        for name, path in (files or {}).items():
            tar.add(path, arcname=name)
    return buf.getvalue()


def docker_build(dockerfile: Path, wheels: list[Path], tag: str, args: dict[str, str],
                 lock: Path | None = None, files: dict[str, Path] | None = None) -> None:
    stage_certs()
    WHEELS.mkdir(parents=True, exist_ok=True)
    # Host network for RUN steps: apt needs no bridge/NAT (and survives a docker0 removed under it).
    cmd = ["docker", "build", "--network", "host", "--tag", tag]
    for key, value in args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    # Classic builder: the context is a tar on stdin, so no unrelated flavour's wheels are sent.
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_BUILDKIT"} | {"DOCKER_BUILDKIT": "0"}
    _run([*cmd, "-"], input=_context(dockerfile, wheels, lock, files), env=env)


def build_args(flavour: Flavour) -> dict[str, str]:
    """The values images/Dockerfile declares as ARG: the flavour's Triton and tag (labels), the pins,
    ports, mode, exit timeout and liveness knobs from versions.env."""
    return {"TRITON_VERSION": flavour.triton, "NGC_TAG": flavour.tag,
            **{k: settings.get(k) for k in ("TORCH_VERSION", "TRANSFORMERS_VERSION", "NUMPY_VERSION", "HTTP_PORT",
                                            "GRPC_PORT", "METRICS_PORT", "MODEL_CONTROL_MODE",
                                            "TRITON_EXIT_TIMEOUT_SECS", "TRITON_LIVENESS_INTERVAL_SECS",
                                            "TRITON_LIVENESS_TIMEOUT_SECS", "TRITON_LIVENESS_FAILURES")}}


def build_cpu_base(force: bool = False) -> str:
    """Debian + the tritonserver from nvidia-pytriton, laid out like the NGC image."""
    ref = cpu_base()
    if image_exists(ref) and not force:
        print(f"{ref}: present (--force rebuilds)")
        return ref
    build_debian_base()
    done = _timed(f"cpu base {ref}")
    cpu = FLAVOURS["cpu"]
    check_lock(cpu)
    if not have_locked_wheels(cpu, CPU_BASE_LOCK):
        download_wheels(cpu)
    wheels = sorted(cpu.wheels.glob("nvidia_pytriton-*.whl"))
    # The stand-in's own Triton (the wheel's), not the GPU pin: its labels and env say 2.51 where it is.
    args = {"DEBIAN_BASE": debian_base(), "TRITON_VERSION": cpu.triton, "NGC_TAG": cpu.tag,
            "PYTRITON_VERSION": settings.get("PYTRITON_VERSION")}
    docker_build(IMAGES / "cpu-base.Dockerfile", wheels, ref, args, lock=CPU_BASE_LOCK)
    done()
    return ref


def build_image(flavour: Flavour) -> str:
    if flavour.name == "cpu":
        build_cpu_base()
    elif not image_exists(flavour.base):
        raise BuildError(f"{flavour.base} is not here: `docker login nvcr.io && docker pull {flavour.base}` "
                         "first (or build the CPU image: make image)")
    check_lock(flavour)
    if not have_locked_wheels(flavour, flavour.lock):
        download_wheels(flavour)
    done = _timed(f"project image {flavour.image}")
    wheels = sorted(w for w in flavour.wheels.glob("*.whl") if not w.name.startswith("nvidia_pytriton-"))
    docker_build(IMAGES / "Dockerfile", wheels, flavour.image, {"BASE_IMAGE": flavour.base, **build_args(flavour)},
                 lock=flavour.lock, files=PROJECT_FILES)
    done()
    size = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", flavour.image],
                          capture_output=True, text=True, check=True).stdout.strip()
    print(f"{flavour.image}: {int(size) / 1e9:.2f} GB")
    return flavour.image


def build_standins() -> list[str]:
    """Local stand-ins tagged with the official names compose/compose.yaml pins (no registry here).

    An image already present under that name (pulled, or built before) is left alone. Grafana has
    no offline build here (no Debian/PyPI/npm package ships its server); `make up MONITORING=1`
    needs it pulled, and the tests check the dashboard's queries against Prometheus instead.
    """
    ref = f"{settings.get('PROMETHEUS_IMAGE')}:{settings.get('PROMETHEUS_TAG')}"
    if image_exists(ref):
        print(f"{ref}: present")
        return [ref]
    build_debian_base()
    done = _timed(f"stand-in {ref}")
    args = {"DEBIAN_BASE": debian_base(), **{k: settings.get(k) for k in ("PROMETHEUS_TAG", "PROMETHEUS_PORT")}}
    docker_build(IMAGES / "standins" / "prometheus.Dockerfile", [], ref, args)
    done()
    return [ref]


def build_gateway() -> str:
    """HAProxy from Debian, on the Debian base: the image compose runs in front of Triton."""
    ref = gateway_image()
    build_debian_base()
    done = _timed(f"gateway {ref}")
    docker_build(IMAGES / "gateway.Dockerfile", [], ref,
                 {"DEBIAN_BASE": debian_base(), "HAPROXY_VERSION": settings.get("HAPROXY_VERSION")})
    done()
    return ref


def build_baked(flavour: Flavour, repository: Path = settings.MODEL_REPOSITORY) -> str:
    """The project image plus the (validated) model repository at /models: <image>-baked."""
    from ..models import validate

    problems = validate.validate_repository(repository)
    if problems:
        raise BuildError(f"not baking {repository}:\n" + "\n".join(f"  {p}" for p in problems))
    base = build_image(flavour)
    ref = f"{base}-baked"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(IMAGES / "baked.Dockerfile", arcname="Dockerfile")
        tar.add(repository, arcname="model_repository",
                filter=lambda info: None if "__pycache__" in info.name else info)
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_BUILDKIT"} | {"DOCKER_BUILDKIT": "0"}
    _run(["docker", "build", "--tag", ref, "--build-arg", f"IMAGE={base}", "-"], input=buf.getvalue(), env=env)
    return ref


def tarball_path(ref: str) -> Path:
    """Where `make image-tarball` writes an image: .cache/images/<name_tag>.tar."""
    return CACHE / f"{ref.replace('/', '_').replace(':', '_')}.tar"


def digest_path(tarball: Path) -> Path:
    """<tarball>.sha256: the digest `make image-tarball` writes beside each tarball."""
    return tarball.with_name(tarball.name + ".sha256")


def _save(ref: str, dest: Path) -> Path:
    """`docker save` ref to dest and its sha256 to <dest>.sha256 (sha256sum format), which the
    Ansible load path checks on the host before `docker load`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run(["docker", "save", "--output", str(dest), ref])
    with dest.open("rb") as tarball:
        digest = hashlib.file_digest(tarball, "sha256").hexdigest()
    digest_file = digest_path(dest)
    digest_file.write_text(f"{digest}  {dest.name}\n")
    print(dest, digest_file, sep="\n")
    return dest


def save_gateway_tarball(dest: Path | None = None) -> Path:
    """`docker save` the gateway image (built first, through the layer cache, so it matches
    images/ now) to .cache/images/<name_tag>.tar: the second tarball Ansible's `load` path ships."""
    ref = build_gateway()
    return _save(ref, dest or tarball_path(ref))


def save_tarball(flavour: Flavour, dest: Path | None = None, baked: bool = False, gateway: bool = True) -> Path:
    """`docker save` the project image for hosts without a registry (docker load there); built
    first (through the layer cache) so the tarball matches images/ as it is now. The gateway
    image goes to its own tarball beside it (unless gateway=False): a host runs both."""
    ref = build_baked(flavour) if baked else build_image(flavour)
    dest = _save(ref, dest or tarball_path(ref))
    if gateway:
        save_gateway_tarball()
    return dest


def refs() -> dict[str, dict]:
    """What Ansible's triton role needs to know about the images (group_vars/all.yml reads it as
    triton_image_refs): per flavour the image compose runs, its tarball (`make image-tarball`), the
    Triton it carries, and for a build on the host its base and build args; the gateway's image,
    tarball and build args (the host supplies DEBIAN_BASE)."""
    found: dict[str, dict] = {
        name: {"image": f.image, "tarball": str(tarball_path(f.image)), "triton": f.triton, "base": f.base,
               "build_args": {"BASE_IMAGE": f.base, **build_args(f)}} for name, f in FLAVOURS.items()}
    found["gateway"] = {"image": gateway_image(), "tarball": str(tarball_path(gateway_image())),
                        "build_args": {"HAPROXY_VERSION": settings.get("HAPROXY_VERSION")}}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops images", description=__doc__)
    parser.add_argument("what", choices=["base-image", "lock", "wheels", "image", "tarball", "standins", "refs", "ref"],
                        help="refs: every image reference as JSON (Ansible reads it); ref: the project image's (--gpu)")
    parser.add_argument("--gpu", action="store_true", help="the NGC flavour instead of the CPU one")
    parser.add_argument("--cpu", action="store_true", help="lock: only the CPU flavour (default: both)")
    parser.add_argument("--force", action="store_true", help="rebuild base images that exist")
    parser.add_argument("--output", type=Path, help="the project image's tarball path (default .cache/images/"
                        "<image>.tar; the gateway's always goes to .cache/images/<gateway image>.tar)")
    parser.add_argument("--bake", action="store_true", help="also bake model_repository/ in (<image>-baked)")
    args = parser.parse_args(argv)
    flavour = FLAVOURS["gpu" if args.gpu else "cpu"]
    if args.what in ("refs", "ref"):  # names only: no engine, no build
        print(json.dumps(refs(), indent=2) if args.what == "refs" else flavour.image)
        return 0
    try:
        if args.what == "base-image":
            build_debian_base(args.force)
            build_cpu_base(args.force)
        elif args.what == "lock":  # both flavours unless --gpu/--cpu names one
            for name in (["gpu"] if args.gpu else ["cpu"] if args.cpu else ["cpu", "gpu"]):
                lock(FLAVOURS[name])
        elif args.what == "wheels":
            download_wheels(flavour)
        elif args.what == "image":
            if args.bake and (problem := fetch.ensure()):
                raise BuildError(problem)
            build_baked(flavour) if args.bake else build_image(flavour)
            build_gateway()
        elif args.what == "standins":
            build_standins()
        else:
            save_tarball(flavour, args.output, args.bake)
    except BuildError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
