"""End to end: site.yml against a throwaway systemd-nspawn Debian host over SSH.

The CPU image and the gateway's travel as `docker save` tarballs (the air-gapped path); the GPU
roles take their skip path (no NVIDIA device in the guest); Docker, the gateway and Triton are
installed and run for real. Then: the seed request and the embed model's sentences are answered through
the guest's address (the gateway's published ports), the release carries the MiniLM files `make models`
extracted (listed in its SHA256SUMS, which its id hashes). The drills then start from a release of a
repository holding only a user's model, one no project file mentions (tests/repos.py's tally_kit: INT32 and
BYTES in; no linear, no embed): it deploys, passes the role's readiness and smoke, and serves every drill
(they test release mechanics, not models; shipping and loading embed slowed each of their plays): a
deploy onto a full /opt/tritonops stops with the figures, and the crash
drills: a deploy SIGKILLed at the two points where the links and the running container disagree, each
followed by the next deploy (under a steady client: it swaps nothing, so nothing is lost) and a
rollback to the old release and its old image; testinfra's host checks pass after that rollback, pruning
leaves exactly the images kept releases run. After a reboot the stack comes back by itself.
Firewall drills: from a second, unlisted address on the test network the published ports time out
over IPv4 and IPv6, also at every 0.2 s poll through that reboot. Needs root, systemd-nspawn, Docker
on the controller (to save the images) and 21-25 minutes. A second run changing nothing and a
broken release rolled back are drilled on the fleet (test_fleet_testhost.py), on two such hosts; check
mode planning no change, in the GPU-fact test here.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tritonops import settings
from tritonops.models import embedding, fetch
from tritonops.serving import smoke
import embedclient
import testhost as th

from deployhelpers import copy_repository_from, folded, image_tarballs
from repos import BYOM_MODEL, build_byom_repository
from playbook_runner import LOGS, PlayResult, ansible_playbook, ansible_playbook_killed_at
import portprobe
from steadyload import SteadyLoad

pytestmark = pytest.mark.testhost
HERE = Path(__file__).parent
E2E_VARS = HERE / "testhost_vars.yml"
HTTP, GRPC = settings.port("http"), settings.port("grpc")
# The gateway's published ports on both of the guest's addresses: the firewall drills' targets.
FIREWALLED = [(address, port) for address in (th.GUEST_ADDR, th.GUEST_ADDR6)
              for port in (HTTP, GRPC, settings.port("metrics"))]
# Drill bounds from measurements on this 2-core box (docs/failure-modes.md), ~2-3x the worst seen.
# Answered after the controller's SIGKILL: the new container, recreated without waiting, loads the
# drills' one-model release first: 10.4 and 6.1 s beside other suites (load 6-8) with linear, 2026-12-07
# (31.1 and 30.1 s when the drills shipped embed too). 45 s: above the 20-28 s a linear container took to
# answer at load 10-14 (docs/failure-modes.md, the crashed container); the user's model imports no torch.
CRASH_ANSWERED_S = 45.0
# The next deploy under a steady client: it finds the new container running and swaps nothing
# (0 failed, no outage, at both points); a container swap would lose its load time (13-30 s).
CONVERGE_OUTAGE_S = 5.0
CONVERGE_FAILED = 10
REBOOT_SERVING_S = 90.0  # answered after `systemctl reboot`: 13.6/13.7 s; 30, 36 and 40.1 s on busier boxes (linear); 8.8 s (tally_kit)


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    tarballs = image_tarballs()
    started = time.monotonic()
    # Snapshots: every play ships the same repository even if the working tree changes meanwhile.
    work = tmp_path_factory.mktemp("deployed")
    whole = copy_repository_from(settings.MODEL_REPOSITORY, work / "model_repository")
    user = build_byom_repository(work)
    with th.TestHost() as host:
        host.image_tarballs = tarballs
        host.whole_repository = whole  # the first deploy's, as `make deploy` ships it: embed and its MiniLM files
        host.model_repository = user  # the drills' (release mechanics, not models): what plays ship by default
        yield host
    print(f"\ntest host lifetime (boot to teardown): {time.monotonic() - started:.0f} s")


def site_args(host: th.TestHost, *extra: str) -> list[str]:
    per_run = {**{knob: str(path) for knob, path in host.image_tarballs.items()}, "triton_model_repository": str(host.model_repository),
               # The controller's own addresses only: the unlisted ones (th.UNLISTED_ADDR*) must time out.
               "triton_client_cidrs": [f"{th.HOST_ADDR}/32", f"{th.HOST_ADDR6}/128"],
               "triton_monitoring_cidrs": [f"{th.HOST_ADDR}/32", f"{th.HOST_ADDR6}/128"]}
    return ["-i", str(host.inventory), "site.yml", "-e", f"@{E2E_VARS}", "-e", json.dumps(per_run), *extra]


def play(host: th.TestHost, *extra: str, log: str):
    return ansible_playbook(*site_args(host, *extra), log=LOGS / f"testhost-{log}.log")


def rollback(host: th.TestHost, *extra: str, log: str):
    return ansible_playbook("-i", str(host.inventory), "rollback.yml", "-e", f"@{E2E_VARS}", *extra,
                            log=LOGS / f"testhost-{log}.log")


def run_hostchecks(host: th.TestHost) -> None:
    """tests/ansible/hostchecks over SSH, as a user would run it against a deployed host."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "hostchecks"),
                           f"--hosts=ssh://{th.MACHINE}", f"--ssh-config={host.ssh_config}",
                           f"--model-repository={host.model_repository}"],
                          cwd=settings.ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " failed" not in proc.stdout


def release_of(host: th.TestHost, link: str = "current") -> str:
    return host.ssh(f"readlink /opt/tritonops/{link}").stdout.strip()


def running(host: th.TestHost) -> tuple[str, str]:
    """(release folder, image ID) of the running Triton container: what serves, whatever the links say."""
    fmt = '{{range .Mounts}}{{if eq .Destination "/models"}}{{.Source}}{{end}}{{end}} {{.Image}}'
    out = host.ssh(f"docker inspect --format {shlex.quote(fmt)} "
                   "$(docker ps -q --filter label=com.docker.compose.service=triton)").stdout.split()
    return str(Path(out[0]).parent), out[1]


def answers(host: th.TestHost, address: str = th.GUEST_ADDR) -> None:
    """Every model of the drills' repository (host.model_repository: the user's) answers its samples through
    the gateway's published ports at address (an IPv6 one in brackets)."""
    smoke.run(f"{address}:{HTTP}", f"{address}:{GRPC}", repository=host.model_repository)


def wait_for_answers(host: th.TestHost, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answers(host)
            return
        except smoke.SmokeFailure:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # also the figure's resolution


@pytest.fixture(scope="module")
def first_release(guest):
    """The first deploy: the whole repository (linear and embed), as `make deploy` ships it."""
    first = play(guest, "-e", f"triton_model_repository={guest.whole_repository}", log="1-first")
    assert first.rc == 0, first.output[-6000:]
    assert "nvidia_driver: skipped on" in first.output, "the driver role did not say why it skipped"
    assert "nvidia_container_toolkit: skipped on" in first.output
    return guest


@pytest.fixture(scope="module")
def deployed(first_release):
    """The drills' starting point: a release of a user's repository (guest.model_repository: tally_kit only,
    no linear) deployed over the first, with nothing outside that repository changed: the role's readiness,
    its gateway check and its smoke take the model from its descriptor (issue 25). The drills are about
    release mechanics (links, images, disk, firewall, reboot), which do not depend on the models; each of
    their plays then ships a few KB instead of embed's ~90 MB of MiniLM files, and each container start
    loads one numpy model instead of four (embed's pipeline: ~20 s more per start here)."""
    second = play(first_release, "--tags", "triton", log="2-user-model")  # as the drills deploy
    assert second.rc == 0, second.output[-6000:]
    assert running(first_release)[0] == release_of(first_release)
    answers(first_release)  # the user's model through the gateway: HTTP JSON, HTTP binary, gRPC
    with pytest.raises(smoke.SmokeFailure, match="model linear not ready"):  # and nothing else
        smoke.run(f"{th.GUEST_ADDR}:{HTTP}", f"{th.GUEST_ADDR}:{GRPC}", models=["linear"])
    return first_release


def test_seed_request_answered_through_the_guest_address(first_release):
    smoke.run(f"{th.GUEST_ADDR}:{HTTP}", f"{th.GUEST_ADDR}:{GRPC}")


def test_embed_answered_beside_linear_through_the_guest_address(first_release):
    """The deployed host serves the whole repository: embed's fixed sentences through the gateway's
    published HTTP and gRPC ports, each answer within cosine 0.9999 of the controller's in-process
    reference, and linear's seed request beside it."""
    assert embedclient.problems(f"{th.GUEST_ADDR}:{HTTP}", f"{th.GUEST_ADDR}:{GRPC}") == []
    smoke.run(f"{th.GUEST_ADDR}:{HTTP}", f"{th.GUEST_ADDR}:{GRPC}")


def test_release_ships_the_minilm_files_and_its_id_covers_them(first_release):
    """The files git does not carry travel with the release: its SHA256SUMS, the manifest the role
    hashes into the release id and checks the shipped files against, lists every file of the checked-in
    model manifests (the tokenizer's and encoder's MiniLM files, model.safetensors included) with the
    pinned sha256, and the host's copies match it. A different MiniLM file is a different id."""
    release = release_of(first_release)
    repo = first_release.whole_repository
    wanted = {f"{e.sha256}  {e.path.relative_to(repo)}" for m in fetch.manifests(repo) for e in fetch.read_manifest(m)}
    assert any(line.endswith(f"{embedding.ENCODER}/{embedding.VERSION}/minilm/model.safetensors") for line in wanted), wanted
    shipped = set(first_release.ssh(f"cat {release}/SHA256SUMS").stdout.splitlines())
    assert wanted <= shipped, f"missing from {release}/SHA256SUMS: {sorted(wanted - shipped)}"
    first_release.ssh(f"cd {release}/model_repository && sha256sum --check --strict --quiet ../SHA256SUMS")


def test_gpu_presence_is_a_local_fact_every_play_reads(deployed):
    """GPU presence lives in /etc/ansible/facts.d/tritonops.fact (written by the nvidia_driver role), so plays
    that skip that role still see it: with a fact saying GPU on this GPU-less host, `--tags triton --check`
    plans the -gpu image with compose.gpu.yaml and rollback.yml --check plans compose.gpu.yaml; without the
    file both plan the CPU stack again, which is exactly what serves (nothing would change). First of the
    drills: previous is then the first deploy's release (linear and embed) and current the user's, so the
    rollback plan's check must send the models of what serves (nothing switched), not the target's."""
    fact_file = "/etc/ansible/facts.d/tritonops.fact"
    written = deployed.ssh(f"cat {fact_file}").stdout
    assert json.loads(written) == {"gpu_present": False, "gpu_count": 0}, f"{fact_file} after the deploy: {written!r}"
    versions = settings.versions()
    gpu_image = f"{versions['IMAGE_REPO']}:{versions['NGC_TAG']}-gpu"
    cpu_image = f"{versions['IMAGE_REPO']}:{versions['CPU_NGC_TAG']}-cpu"
    # rollback.yml's target: the deployed fixture leaves a previous release, with other models.
    assert deployed.ssh("test -L /opt/tritonops/previous", check=False).returncode == 0, "no previous release to plan a rollback to"
    assert deployed.ssh("ls /opt/tritonops/previous/model_repository").stdout.split() != [BYOM_MODEL]

    def plans(name: str) -> tuple[PlayResult, PlayResult]:
        deploy = play(deployed, "--tags", "triton", "--check", log=f"6-gpu-fact-{name}")
        back = rollback(deployed, "--check", log=f"6-gpu-fact-{name}-rollback")
        for result in (deploy, back):
            assert result.rc == 0, result.output[-6000:]
        assert deploy.recap()[th.MACHINE]["failed"] == 0
        return deploy, back

    try:
        deployed.ssh(f"echo {shlex.quote(json.dumps({'gpu_present': True, 'gpu_count': 1}))} > {fact_file}")
        deploy, back = plans("present")
        gpu_files = "compose files compose.yaml, compose.gpu.yaml"
        assert f"GPUs yes on {th.MACHINE}" in folded(deploy) and gpu_files in folded(deploy), deploy.output[-8000:]
        assert f"start {gpu_image} with compose.yaml, compose.gpu.yaml" in folded(deploy), deploy.output[-8000:]
        assert gpu_files in folded(back), back.output[-8000:]

        deployed.ssh(f"rm {fact_file}")
        deploy, back = plans("absent")
        for result in (deploy, back):
            assert "ansible_local.tritonops.gpu_present: no file): compose files compose.yaml" in folded(result), result.output[-8000:]
            assert gpu_files not in folded(result), result.output[-8000:]
        assert cpu_image in deploy.output and gpu_image not in deploy.output, deploy.output[-8000:]
        assert deploy.recap()[th.MACHINE]["changed"] == 0, deploy.output[-8000:]  # the plan is what serves
    finally:
        deployed.ssh(f"printf %s {shlex.quote(written)} > {fact_file}")


@contextlib.contextmanager
def full_filesystem(host: th.TestHost, workdir: Path, target: str = "/opt/tritonops", room_mib: int = 64):
    """Mount a small ext4 filesystem over `target` in the guest (a loop device on the controller, mounted
    in the guest's mount namespace with nsenter): a copy of what is there, the image tarballs left out,
    and a filler file that leaves it full. Running containers keep the files they mounted before.
    Its size: what the copy needs (a release carries the ~90 MB MiniLM files) plus room_mib."""
    image, staging = workdir / "full.img", workdir / "staging"
    source = host.root / target.lstrip("/")
    used = subprocess.run(["du", "-s", "--block-size=1M", f"--exclude={source}/images", str(source)],
                          check=True, capture_output=True, text=True).stdout.split()[0]
    size_mib = int(used) + room_mib
    subprocess.run(["truncate", "-s", f"{size_mib}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True).stdout.strip()
    node = "/dev/tritonops-full"
    try:
        staging.mkdir()
        subprocess.run(["mount", loop, str(staging)], check=True)
        try:
            subprocess.run(["rsync", "-a", "--exclude=/images/*", f"{source}/", f"{staging}/"], check=True)
            subprocess.run(["dd", "if=/dev/zero", f"of={staging}/filler", "bs=1M", "status=none"], check=False)
        finally:
            subprocess.run(["umount", str(staging)], check=True)
        device = os.stat(loop).st_rdev
        subprocess.run(["nsenter", "-t", str(host.init_pid()), "-m", "sh", "-c",
                        f"mknod {node} b {os.major(device)} {os.minor(device)} && mount {node} {target}"], check=True)
        try:
            yield
        finally:
            subprocess.run(["nsenter", "-t", str(host.init_pid()), "-m", "sh", "-c", f"umount {target}; rm -f {node}"],
                           check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)


def test_full_disk_stops_the_deploy_and_the_old_release_keeps_serving(deployed, tmp_path):
    """Disk-full drill: /opt/tritonops on a small, full filesystem. A deploy of a new release stops
    before writing, naming the filesystem and the figures: first for the image tarballs (the load
    path), then, with the images already on the host, for the release itself. Nothing is switched and
    the old release answers throughout; with the room back, the same deploy goes through."""
    before = release_of(deployed)
    repo = copy_repository_from(deployed.model_repository, tmp_path / "model_repository")
    config = repo / BYOM_MODEL / "config.pbtxt"
    config.write_text(config.read_text() + "# release deployed onto a full disk\n")
    args = ("--tags", "triton", "-e", f"triton_model_repository={repo}")
    with full_filesystem(deployed, tmp_path):
        free = int(deployed.ssh("df --output=avail -B1 /opt/tritonops | tail -1").stdout)
        assert free < 1 << 20, f"{free} bytes free: the filler did not fill the filesystem"  # ext4 keeps a few blocks back
        loaded = play(deployed, *args, log="8-full-disk-load")
        pulled = play(deployed, *args, "-e", "triton_image_source=pull", log="8-full-disk-release")  # images are there
        assert release_of(deployed) == before == running(deployed)[0]
        answers(deployed)
    for result, what in ((loaded, "the image tarballs to copy would need"), (pulled, "(model repository plus triton_release_margin_bytes "
                                                                                  "for its other files) would need")):
        assert result.rc != 0, result.output[-6000:]
        said = folded(result)
        assert f"Not enough space on {th.MACHINE}: /opt/tritonops (filesystem /opt/tritonops, /dev/tritonops-full) has " in said
        assert what in said, result.output[-6000:]
        assert "Nothing was changed: the running release keeps serving." in folded(result)
    assert release_of(deployed) == before == running(deployed)[0]
    answers(deployed)


# The controller is SIGKILLed as it prints one of these task banners: the tasks before it are done.
# The two points where the links and the running container can disagree (the ones serving.yml repairs);
# a kill before the switch leaves the old release serving untouched, as any failed deploy does.
CRASH_POINTS = {
    "container-recreated": 'TASK [triton : Name "previous" (the rollback target)',
    "links-switched-not-checked": "TASK [triton : Wait for each Triton container to turn healthy",
}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_deploy_serves_converges_and_rolls_back(deployed, tmp_path, point):
    """Crash drill: `make deploy` of a new release is SIGKILLed on the controller at `point`. The new
    release changes no answers: its model repository differs by a comment and its image is the old
    one rebuilt under the same tag (a label), on the host. Then: the host answers the drills' model
    within CRASH_ANSWERED_S (old or new release); the next deploy converges (current is the new release
    and is what runs, by the new image's ID) without a swap: a steady client loses at most CONVERGE_FAILED; `make rollback` returns to the release that served before, with its old image,
    although the tag now names the rebuilt one."""
    from tritonops.stack import images

    ref = images.FLAVOURS["cpu"].image
    before, old_id = running(deployed)
    assert release_of(deployed) == before
    repo = copy_repository_from(deployed.model_repository, tmp_path / "model_repository")
    config = repo / BYOM_MODEL / "config.pbtxt"
    config.write_text(config.read_text() + f"# release interrupted at {point}\n")
    args = ("--tags", "triton", "-e", f"triton_model_repository={repo}")
    try:
        deployed.ssh(f"printf 'FROM {ref}\\nLABEL io.tritonops.test={point}\\n' | docker build -q -t {ref} -", timeout=300)
        new_id = deployed.ssh(f"docker image inspect --format '{{{{.Id}}}}' {ref}").stdout.strip()
        assert new_id != old_id
        ansible_playbook_killed_at(CRASH_POINTS[point], *site_args(deployed, *args), log=LOGS / f"testhost-7-{point}-killed.log")
        killed = time.monotonic()
        wait_for_answers(deployed, timeout=CRASH_ANSWERED_S)
        answered = time.monotonic() - killed
        serving_after_kill = running(deployed)[0]

        with SteadyLoad(f"{th.GUEST_ADDR}:{HTTP}", deployed.model_repository) as load:
            again = play(deployed, *args, log=f"7-{point}-converge")
            time.sleep(2)  # answers after the play: the new release serves
        assert again.rc == 0, again.output[-6000:]
        new = release_of(deployed)
        # Printed before the checks: a failing run shows its figures.
        print(f"\ncrash drill {point}: {BYOM_MODEL} answered {answered:.1f} s after the kill (bound {CRASH_ANSWERED_S} s), by the "
              f"{'old' if serving_after_kill == before else 'new'} release; converged to {Path(new).name} (next deploy under "
              f"load: {load.figures}; bounds {CONVERGE_FAILED} failed, {CONVERGE_OUTAGE_S} s); rolling back to {Path(before).name}")
        assert new != before and running(deployed) == (new, new_id), (new, running(deployed))
        assert serving_after_kill in (before, new), f"after the kill {serving_after_kill} served, neither old nor new"
        assert release_of(deployed, "previous") == before, "the rollback target is not the release that served before"
        assert load.figures.sent - load.figures.failed > 10 and load.figures.failed_after_last_success == 0, load.figures
        assert load.figures.longest_outage_s <= CONVERGE_OUTAGE_S, load.figures
        assert load.figures.failed <= CONVERGE_FAILED, load.figures

        back = rollback(deployed, log=f"7-{point}-rollback")
        assert back.rc == 0, back.output[-6000:]
        assert release_of(deployed) == before and running(deployed) == (before, old_id)
        assert release_of(deployed, "previous") == new
        answers(deployed)
    finally:
        deployed.ssh(f"docker tag {old_id} {ref}")  # the tag names what the tarball holds again
    assert answered <= CRASH_ANSWERED_S, f"{BYOM_MODEL} answered {answered:.1f} s after the kill"  # after the rollback: the host as found


def test_host_checks_pass_after_a_rollback(deployed):
    """The state the drills leave: rolled back. tests/ansible/hostchecks holds there too."""
    assert release_of(deployed, "previous"), "no rollback happened before this test"
    run_hostchecks(deployed)


def test_prune_keeps_exactly_the_images_kept_releases_run(deployed):
    """Every deploy prunes: the content-ID tags left are exactly those the kept releases' overrides name
    (the drills made one rebuilt image per release; the pruned releases' images went with them)."""
    releases = deployed.ssh("ls -1d /opt/tritonops/releases/*/").stdout.split()
    named = set()
    for release in releases:
        override = yaml.safe_load(deployed.ssh(f"cat {release}compose.override.yaml").stdout)
        named |= {service["image"] for service in override["services"].values() if "image" in service}
    tags = set(deployed.ssh("docker images --format '{{.Repository}}:{{.Tag}}'").stdout.split())
    assert {t for t in tags if ":sha256-" in t} == named, (tags, named)
    assert len(releases) <= 3 + 2  # triton_releases_keep, plus current and previous when older


def test_failed_rollback_leaves_the_host_as_it_was(deployed):
    """`make rollback` to a release that no longer starts (its model.py now raises on import, edited
    on the host) fails, says so, and leaves the host as it was: the same release serves, the links unchanged."""
    current, previous = release_of(deployed), release_of(deployed, "previous")
    model_py = f"{previous}/model_repository/{BYOM_MODEL}/1/model.py"
    deployed.ssh(f"echo 'raise RuntimeError(\"deliberately broken for the failed-rollback test\")' >> {model_py}")
    assert "deliberately broken" in deployed.ssh(f"cat {model_py}").stdout
    back = rollback(deployed, "-e", "triton_ready_timeout=120", log="9-failed-rollback")
    assert back.rc != 0, "rolling back to a broken release succeeded"
    said = folded(back)
    assert f"Rollback to release {Path(previous).name} failed" in said, back.output[-6000:]
    assert f"Release {Path(current).name} is serving again; current and previous are as they were." in said
    assert (release_of(deployed), release_of(deployed, "previous")) == (current, previous)
    assert running(deployed)[0] == current
    answers(deployed)


def test_stack_comes_back_after_a_reboot(deployed):
    # Firewall drill: the unlisted addresses poll every published port over IPv4 and IPv6 every 0.2 s
    # through the reboot (shutdown, boot, Docker starting the containers) and until the model answers.
    rebooted = deployed.boots + 1
    with portprobe.Poller(th.UNLISTED_ADDR, th.UNLISTED_ADDR6, FIREWALLED, period=0.2,
                          phase=lambda: "rebooted" if deployed.boots >= rebooted else "before") as poller:
        started = time.monotonic()
        deployed.reboot()
        wait_for_answers(deployed, timeout=180)
        serving = time.monotonic() - started
    print(f"\nserving again {serving:.1f} s after the reboot command (bound {REBOOT_SERVING_S} s); firewall drill: {poller.rounds} polls of "
          f"{len(FIREWALLED)} ports from {th.UNLISTED_ADDR} and {th.UNLISTED_ADDR6}: {dict(poller.phases)}, "
          f"first seen (s): {poller.first_seen}")
    assert poller.count(portprobe.CONNECTED) == 0, f"connections got through during the reboot: {poller.outcomes}"
    # A refusal is a SYN that reached the guest's TCP stack unfiltered: in the new boot, the rules were
    # missing while the network was up. (In the old boot's last milliseconds the kernel tears the
    # guest's network namespace down, its nftables table before its veth: a refusal there is not a boot.)
    assert poller.phases["rebooted", portprobe.REFUSED] == 0, f"unfiltered SYNs after the reboot: {poller.outcomes}"
    for address in (th.GUEST_ADDR, th.GUEST_ADDR6):  # the drops were seen, on both families
        assert poller.outcomes[(address, HTTP), portprobe.TIMEOUT] > 0, poller.outcomes
    assert serving <= REBOOT_SERVING_S, f"serving again {serving:.1f} s after the reboot command"


def test_unlisted_address_times_out_on_every_port(deployed):
    """Firewall drill: from an address on the guest's network that no firewall list names, HTTP, gRPC and
    metrics time out over IPv4 and IPv6 (dropped, not refused); from the listed address they connect and
    the drills' model answers over both; SSH stays open to both."""
    v4 = [t for t in FIREWALLED if ":" not in t[0]]
    v6 = [t for t in FIREWALLED if ":" in t[0]]
    unlisted = {**portprobe.probe(th.UNLISTED_ADDR, v4), **portprobe.probe(th.UNLISTED_ADDR6, v6)}
    assert unlisted == dict.fromkeys(FIREWALLED, portprobe.TIMEOUT), unlisted
    listed = {**portprobe.probe(th.HOST_ADDR, v4), **portprobe.probe(th.HOST_ADDR6, v6)}
    assert listed == dict.fromkeys(FIREWALLED, portprobe.CONNECTED), listed
    answers(deployed)
    answers(deployed, f"[{th.GUEST_ADDR6}]")
    ssh = {**portprobe.probe(th.UNLISTED_ADDR, [(th.GUEST_ADDR, 22)]), **portprobe.probe(th.UNLISTED_ADDR6, [(th.GUEST_ADDR6, 22)])}
    assert set(ssh.values()) == {portprobe.CONNECTED}, f"the firewall touched SSH: {ssh}"


def test_the_firewall_fails_closed(deployed):
    """Docker requires the firewall (the port_firewall role's drop-in): while its rules cannot load, Docker does
    not start. Restarting Debian's nftables.service, which flushes the whole ruleset, leaves the table in
    place. The unlisted address times out throughout; the model answers after."""
    rules = yaml.safe_load((settings.ROOT / "ansible/roles/triton/defaults/main.yml").read_text())["triton_firewall_rules"]
    http = [(th.GUEST_ADDR, HTTP)]
    restarted = deployed.ssh("systemctl restart nftables.service && nft list table inet tritonops >/dev/null", check=False)
    assert restarted.returncode == 0, f"the table is gone after nftables.service restarted: {restarted.stderr}"
    assert portprobe.probe(th.UNLISTED_ADDR, http) == dict.fromkeys(http, portprobe.TIMEOUT)
    # Docker stopped (live-restore: the containers keep serving, behind the table a failed nft -f leaves as it
    # was), the rules broken, the firewall's unit stopped: starting Docker must fail on the dependency.
    deployed.ssh(f"cp {rules} {rules}.drill && echo 'not nftables' >> {rules} && "
                 "systemctl stop docker.socket docker.service tritonops-firewall.service")
    try:
        start = deployed.ssh("systemctl start docker.service", check=False)
        states = deployed.ssh("systemctl is-active docker.service tritonops-firewall.service", check=False).stdout.split()
        unlisted = portprobe.probe(th.UNLISTED_ADDR, http)
    finally:
        deployed.ssh(f"mv {rules}.drill {rules} && systemctl start docker.socket docker.service")
    print(f"\nDocker without its firewall: {start.stderr.strip()!r}, states {states}")
    assert start.returncode != 0 and "dependency" in start.stderr.lower(), start
    assert states == ["inactive", "failed"], states
    assert unlisted == dict.fromkeys(http, portprobe.TIMEOUT), unlisted
    states = deployed.ssh("systemctl is-active docker.service tritonops-firewall.service", check=False).stdout.split()
    assert states == ["active", "active"], states
    wait_for_answers(deployed, timeout=60)


def test_management_apis_need_this_hosts_admin_key(deployed):
    """Restricted management APIs on the host: its key was generated on the controller (0600), sits on
    the host 0400 for the container's user in a root-only folder, never shows in the play's output or
    in `docker inspect`; inside the Triton container every restricted endpoint is refused without it
    and served with it; through the gateway, statistics need it."""
    import shlex
    import urllib.error
    import urllib.request

    import restricted
    from tritonops.serving import adminkey

    key_file = settings.ROOT / ".cache" / "secrets" / f"{th.MACHINE}.admin-key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.parent.stat().st_mode & 0o777 == 0o700
    key = key_file.read_text().strip()
    assert deployed.ssh("stat -c '%a %u' /opt/tritonops/secrets /opt/tritonops/secrets/admin-key").stdout.split() == \
        ["700", "0", "400", "1000"]
    assert not [log.name for log in LOGS.glob("testhost-*.log") if key in log.read_text(errors="replace")]
    cid = deployed.ssh("docker ps -q --filter label=com.docker.compose.service=triton").stdout.split()[0]
    assert key not in deployed.ssh(f"docker inspect {cid}").stdout

    def send(requests):
        done = subprocess.run(["ssh", "-F", str(deployed.ssh_config), th.MACHINE,
                               f"docker exec -i {cid} python3 -c {shlex.quote(restricted.SEND_SCRIPT)} http://127.0.0.1:{HTTP}"],
                              input=json.dumps(requests), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert restricted.check_http(send, key, deployed.model_repository) == []
    stats = f"http://{th.GUEST_ADDR}:{HTTP}/v2/models/{BYOM_MODEL}/stats"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(stats, timeout=10)
    assert refused.value.code == restricted.HTTP_REFUSAL[0]
    with urllib.request.urlopen(urllib.request.Request(stats, headers=adminkey.headers(key)), timeout=10) as r:
        assert r.status == 200
