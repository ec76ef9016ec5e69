"""Locust load test for the `embed` model (sentence embeddings, all-MiniLM-L6-v2) over HTTP, JSON or binary.

    locust -f loadtests/embed.py --headless -u 16 -r 16 -t 30s -H http://127.0.0.1:8000 --slo local-cpu-embed
    locust -f loadtests/embed.py --binary ...             # binary tensor extension (texts and embeddings)
    locust -f loadtests/embed.py --batch-size 1 ...       # one sentence per request instead of the mix
    make loadtest MODEL=embed                             # the same, gated, through tritonops loadtest

Each request carries a batch of sentences drawn from tritonops.models.embedding.SENTENCES (repeats allowed):
1..MIX_ROWS of them, or a fixed --batch-size. Their references are computed once per process at start
(transformers in this process, one sentence at a time, as tritonops.models.embedding.reference does), and the
pool of requests is encoded then too; per request a user sends prepared bytes and checks the answer
against the prepared references (tritonops.models.embedding.check_json_answer / check_binary_answer: shape,
dtype, cosine >= MIN_COSINE per row, unit norm). A wrong answer is a failure, not a success.

The SLO gate (--slo, --target-rps, ...) is loadtests/slo_gate.py's event hooks; here it reads the
server counters of `embed` and the average batch its encoder step formed.
"""
from __future__ import annotations

import functools
import json
import random
import urllib.request

import numpy as np
# common: SIGINT through gevent's hub, the HTTP request path; it imports the gate, which installs its
# event hooks (its arguments, thresholds, verdict and pacing).
from common import PreparedHttpUser, post_checked
from locust import events, task

import slo_gate
from tritonops.models import embedding

slo_gate.MODEL, slo_gate.STEP = embedding.MODEL, embedding.ENCODER
# Mixed batches: 1..MIX_ROWS sentences a request. Not 1..max_batch_size (64): a 64-sentence request
# costs the 2-core box ~0.1 s of CPU, and clients of an embedding service send a few texts at a time.
MIX_ROWS = 8
POOL_REQUESTS = 512  # prepared per process; users cycle through them


@events.init_command_line_parser.add_listener
def _arguments(parser):
    parser.add_argument("--binary", action="store_true", default=False,
                        help="send texts and receive embeddings with the binary tensor extension instead of JSON")
    parser.add_argument("--batch-size", type=int, default=0,
                        help=f"sentences per request; 0 (default) mixes 1..{MIX_ROWS}")


@events.init.add_listener
def _prepare(environment, runner, **_kwargs):
    """References and request pool now, before Locust's clock starts (transformers loads for seconds).
    A master runs no users; a run stopped at init (a bad thresholds file) never gets here."""
    EmbedHttpUser.prepare_at_init(environment, runner)


@functools.cache
def _references() -> dict[str, np.ndarray]:
    """Each fixed sentence's reference embedding, computed once per process."""
    return dict(zip(embedding.SENTENCES, embedding.reference(embedding.SENTENCES)))


@functools.cache
def _max_batch_size(host: str) -> int:
    """max_batch_size from the served model's config (once per process and server)."""
    url = f"{host.rstrip('/')}/v2/models/{embedding.MODEL}/config"
    with urllib.request.urlopen(url, timeout=30) as response:
        return int(json.loads(response.read()).get("max_batch_size", 0))


def _batch_sizes(host: str, wanted: int) -> tuple[int, ...]:
    limit = _max_batch_size(host)
    if wanted < 0 or wanted > limit:
        raise ValueError(f"--batch-size {wanted} is outside 1..{limit} (max_batch_size of {embedding.MODEL} on {host})")
    return (wanted,) if wanted else tuple(range(1, min(MIX_ROWS, limit) + 1))


@functools.cache
def _pool(binary: bool, sizes: tuple[int, ...]) -> list[tuple[tuple[bytes, dict], tuple[str, ...], np.ndarray]]:
    """POOL_REQUESTS prepared requests: (body and headers as tritonclient builds them, the texts, their
    references [rows, DIM]), random sentences in batches of the given sizes."""
    references = _references()
    rng = random.Random()
    pool = []
    for _ in range(POOL_REQUESTS):
        texts = tuple(rng.choices(embedding.SENTENCES, k=rng.choice(sizes)))
        pool.append((embedding.http_body(texts, binary), texts, np.stack([references[t] for t in texts])))
    return pool


def _short(problem: str) -> str:
    """Failure text Locust can group: which rule failed, without the row, the sentence and its figures."""
    if " has cosine " in problem:
        return f"wrong answer: output '{embedding.OUTPUT}' differs from the reference (cosine below {embedding.MIN_COSINE})"
    return "wrong answer: " + problem.split(": row ")[0]


class EmbedHttpUser(PreparedHttpUser):
    """POST /v2/models/embed/versions/1/infer with prepared batches of sentences; every answer checked
    against the references computed at start (tritonops.models.embedding's rules and messages)."""

    model = embedding.MODEL
    path = f"/v2/models/{embedding.MODEL}/versions/{embedding.VERSION}/infer"

    @staticmethod
    def prepare(host: str, opts) -> list:
        return _pool(opts.binary, _batch_sizes(host, opts.batch_size))

    @task
    def infer(self):
        request, texts, want = next(self.requests)
        if self.binary:
            check = lambda body, length: embedding.check_binary_answer(body, length, texts, want)  # noqa: E731
        else:
            check = lambda body, _length: embedding.check_json_answer(body, texts, want)  # noqa: E731
        post_checked(self, self.path, request, check, _short)
