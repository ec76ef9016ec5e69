"""Shared by the end-to-end suites on nspawn test hosts (one host, and the fleet): the images they
deploy as tarballs, snapshots of the model repository, the play's output folded for matching."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ci_policy import skip_or_fail
from playbook_runner import PlayResult


def image_tarballs() -> dict[str, Path]:
    """The CPU project image and the gateway image, each saved by tritonops.stack.images to its tarball
    (built first when missing) with its .sha256 beside it (the role checks it before docker load); a
    tarball is reused while it holds the image as it is now. One process at a time: make test's lanes
    start both end-to-end suites at once, and two saves to one file would interleave."""
    import fcntl

    from tritonops.stack import images

    images.CACHE.mkdir(parents=True, exist_ok=True)
    with open(images.CACHE / ".save.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _image_tarballs()


def _image_tarballs() -> dict[str, Path]:
    from tritonops.stack import images

    flavour = images.FLAVOURS["cpu"]
    saves = {"triton_image_tarball": (flavour.image, lambda dest: images.save_tarball(flavour, dest, gateway=False)),
             "triton_gateway_image_tarball": (images.gateway_image(), images.save_gateway_tarball)}
    tarballs = {knob: images.tarball_path(ref) for knob, (ref, _) in saves.items()}
    saved = {knob: [t, images.digest_path(t)] for knob, t in tarballs.items()}
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine here
        if all(f.exists() for files in saved.values() for f in files) and not os.environ.get("CI"):
            print(f"\nno Docker engine ({exc}): deploying the tarballs saved earlier, {list(tarballs.values())}")
            return tarballs
        skip_or_fail(f"no Docker engine on the controller to save the images from: {exc}", need="docker")
    if not images.image_exists(flavour.image):
        images.build_image(flavour)
    if not images.image_exists(images.gateway_image()):
        images.build_gateway()
    for knob, (ref, save) in saves.items():
        image_id = client.images.get(ref).id
        stamp = tarballs[knob].with_suffix(".id")
        if not (all(f.exists() for f in saved[knob]) and stamp.exists() and stamp.read_text() == image_id):
            save(tarballs[knob])
            stamp.write_text(saved_image_id(tarballs[knob]))  # what was saved, should the tag have moved meanwhile
    return tarballs


def saved_image_id(tarball: Path) -> str:
    """The image a `docker save` tarball holds: its manifest's config digest."""
    import tarfile

    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    return "sha256:" + manifest[0]["Config"].removesuffix(".json").rsplit("/", 1)[-1]


def copy_repository_from(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def linear_only_snapshot(dest: Path) -> Path:
    """A model repository holding a copy of the linear model only (a copy: the role ships files, not
    symlinks): for drills about rolling deploys and health rather than the models, so that each host's
    Triton does not also load the embed pipeline (~10 s per start, ~1 GB, three more stubs)."""
    from tritonops import settings
    from tritonops.models import linear

    copy_repository_from(settings.MODEL_REPOSITORY / linear.MODEL, dest / linear.MODEL)
    return dest


def folded(result: PlayResult) -> str:
    """The play's output with whitespace folded: the YAML callback wraps long messages."""
    return " ".join(result.output.split())
