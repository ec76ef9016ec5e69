"""The CPU project image carries the runtime, not the models (issue 12): at most 1.5 GB with
transformers in it, no model file inside (the model repository is mounted at run time, or baked into
<image>-baked: test_baked_image.py), and its Python, the one the backend stubs embed, stays offline by
the image's own settings and loads the mounted MiniLM files without a network."""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tritonops import settings
from tritonops.models import embedding, fetch

pytestmark = pytest.mark.docker
MAX_BYTES = 1_500_000_000  # the 1.5 GB, as `docker images` counts (10^9)
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TEXT = next(t for t in embedding.SENTENCES if not t.isascii())  # the controller's tokenizer must give the same ids


def model_entries() -> list[fetch.Entry]:
    """Every file the checked-in SHA256SUMS manifests list (what `make models` extracts)."""
    return [e for m in fetch.manifests(settings.MODEL_REPOSITORY) for e in fetch.read_manifest(m)]


def run_in(image: str, script: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", *options,
                           "--entrypoint", "sh", image, "-c", script], capture_output=True, text=True, timeout=300)


def test_cpu_image_is_at_most_1_5_gb_and_holds_no_model_file(built_images, docker_client):
    """Size as the engine reports it (`docker image inspect`'s Size), and a search of the image's whole
    filesystem: no file named like a model file (MiniLM, safetensors, the manifests' names) whose sha256
    is one of the manifests', nothing named minilm or *.safetensors at all, and /models empty."""
    ref = built_images["triton"]
    size = docker_client.images.get(ref).attrs["Size"]
    print(f"\n{ref}: {size} bytes ({size / 1e9:.3f} GB)", file=sys.stderr)
    assert size <= MAX_BYTES, f"{ref} is {size / 1e9:.3f} GB, above {MAX_BYTES / 1e9} GB"
    entries = model_entries()
    assert any(e.relpath.endswith(".safetensors") for e in entries), entries  # the search below looks for them
    names = sorted({Path(e.relpath).name for e in entries})
    match = " -o ".join(["-iname '*minilm*'", "-name '*.safetensors'", *(f"-name {shlex.quote(n)}" for n in names)])
    found = run_in(ref, f"find / -xdev -type f \\( {match} \\) -exec sha256sum {{}} + ; echo '== /models'; ls -A /models",
                   "--user", "0")  # root: every folder searched
    assert found.returncode == 0, found.stderr
    hashed, _, listing = found.stdout.partition("== /models\n")
    files = {path: digest for digest, path in (line.split(maxsplit=1) for line in hashed.splitlines())}
    same = {path for path, digest in files.items() if digest in {e.sha256 for e in entries}}
    named = {path for path in files if "minilm" in path.lower() or path.endswith(".safetensors")}
    assert not same and not named, f"model files in {ref}: {sorted(same | named)}"
    assert listing.strip() == "", f"/models in {ref} is not empty: {listing}"


def test_image_python_is_offline_and_loads_the_mounted_files(built_images, docker_client):
    """The image sets HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE for every model (the embed models also set
    them for themselves): with no network, a read-only root and only the repository mounted, the image's
    python3 (the stubs' interpreter, same site-packages) imports transformers at the pinned version and
    loads the tokenizer and encoder files without being told local_files_only."""
    ref = built_images["triton"]
    env = dict(item.split("=", 1) for item in docker_client.images.get(ref).attrs["Config"]["Env"])
    assert {k: env.get(k) for k in OFFLINE} == OFFLINE, env
    folders = {name: embedding._files(name, settings.MODEL_REPOSITORY).relative_to(settings.MODEL_REPOSITORY)
               for name in (embedding.TOKENIZER, embedding.ENCODER)}
    script = ("import transformers\n"
              "from huggingface_hub import constants\n"
              "from transformers import AutoModel, AutoTokenizer\n"
              f"tokenizer = AutoTokenizer.from_pretrained('/models/{folders[embedding.TOKENIZER]}')\n"
              f"model = AutoModel.from_pretrained('/models/{folders[embedding.ENCODER]}', use_safetensors=True)\n"
              f"print(transformers.__version__, constants.HF_HUB_OFFLINE, model.config.hidden_size, tokenizer({TEXT!r})['input_ids'])\n")
    done = run_in(ref, f"exec python3 -c {shlex.quote(script)}",
                  "--volume", f"{settings.MODEL_REPOSITORY}:/models:ro")
    assert done.returncode == 0, done.stderr[-3000:]
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(settings.MODEL_REPOSITORY / folders[embedding.TOKENIZER], local_files_only=True)(TEXT)["input_ids"]
    assert done.stdout.split(maxsplit=3) == [settings.get("TRANSFORMERS_VERSION"), "True", str(embedding.DIM), f"{ids}\n"], done.stdout
