"""Locust load test for any model of a repository, driven by its descriptor (tritonops.json): KServe v2 over
HTTP, JSON or binary tensors.

    locust -f loadtests/models.py --headless -u 16 -r 16 -t 30s -H http://127.0.0.1:8000 --model tally_kit \\
        --repository /path/to/model_repository --slo descriptor     # gate: the model's own `slo`
    locust -f loadtests/models.py ... --model linear                 # one model of the shipped repository
    locust -f loadtests/models.py ...                                # every model with samples
    locust -f loadtests/models.py --binary ...                       # binary tensor extension
    make loadtest MODEL=tally_kit REPO=/path/to/model_repository     # the same, gated, through tritonops loadtest

What is sent: the descriptor's samples, each request encoded once at start (as tritonclient encodes it).
Without --model, every model of the repository that has samples (ensemble steps are reached through their
ensemble, not loaded alone), weighted equally: the pool holds as many requests per model whatever its
number of samples (POOL_PER_MODEL, the samples in turn), shuffled. Locust names each request
`<model> [json|binary]`.

What is checked, per answer, cheaply (tritonops.models.prepared: no tritonclient, no numpy per request): every
expected output of the sample is present with its shape and datatype; numbers within the sample's tolerance
(|got - want| <= atol + rtol * |want|, np.isclose's rule; in binary, identical bytes pass at once),
BYTES equal. A wrong answer is a failure. A sample with no stored outputs (a `reference` judges it, as the
embed descriptor does): at start its answer is fetched once and judged by the reference
(tritonops.models.descriptor.check, e.g. the transformers reference for embed); that answer, once right, is the
expected output of every later request, within REFERENCE_RTOL / REFERENCE_ATOL (a dynamic batcher's
other batch shapes move floats a little). A wrong first answer: no user can start (errors in user code,
which the gate fails).

The gate: `--slo descriptor` judges p99 latency and the error rate against the models' own `slo`
(DEFAULT_SLO for keys left out; several models: the strictest of each); `--slo TABLE` judges a table of
loadtests/thresholds.toml as for linear.py. The server-side counters are read for a single --model.
"""
from __future__ import annotations

import functools
import random
import sys
from pathlib import Path

# common: SIGINT through gevent's hub, the HTTP request path; it imports the gate, which installs its
# event hooks (its arguments, thresholds, verdict and pacing).
from common import PreparedHttpUser, post_checked
from locust import events, task

import slo_gate
from tritonops import settings
from tritonops.models import descriptor, prepared

POOL_PER_MODEL = 256  # prepared requests per model (its samples in turn); users cycle through the pool
REFERENCE_RTOL, REFERENCE_ATOL = 1e-3, 1e-4


@events.init_command_line_parser.add_listener
def _arguments(parser):
    parser.add_argument("--model", default="", help="the model to load (default: every model with samples)")
    parser.add_argument("--repository", default=str(settings.MODEL_REPOSITORY),
                        help="the model repository whose descriptors (tritonops.json) are read")
    parser.add_argument("--binary", action="store_true", default=False,
                        help="send and receive tensors with the binary tensor extension instead of JSON")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="not used: each sample fixes its own shapes (accepted so tritonops loadtest can pass 0)")


def descriptors(opts) -> list[descriptor.Descriptor]:
    from tritonops.serving import smoke

    try:
        return smoke.descriptors_of(Path(opts.repository), [opts.model] if opts.model else None)
    except smoke.SmokeFailure as exc:
        raise ValueError(str(exc)) from None


def _slos(opts) -> dict[str, dict]:
    return {d.model: d.slo for d in descriptors(opts)}


slo_gate.DESCRIPTOR_SLOS = _slos


@events.init.add_listener
def _prepare(environment, runner, **_kwargs):
    """The models' descriptors and the request pool now, before Locust's clock starts. A master runs no
    users; a run stopped at init (bad thresholds) never gets here."""
    opts = environment.parsed_options
    if opts is None:
        return
    try:
        descs = descriptors(opts)
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    # the server's counters are those of the one model loaded (several: none)
    slo_gate.MODEL, slo_gate.STEP = (descs[0].model if len(descs) == 1 else ""), ""
    ModelsHttpUser.prepare_at_init(environment, runner)


def _short(model: str):
    def short(problem: str) -> str:
        """Failure text Locust can group: the model and the output, without the per-request values."""
        if " value " in problem:
            return f"wrong answer: {model}: {problem.split(' value ')[0]} differs from the descriptor's sample"
        return f"wrong answer: {model}: {problem}"
    return short


# --- The request pool ---


def _judged_by_reference(host: str, desc: descriptor.Descriptor, sample: descriptor.Sample) -> descriptor.Sample:
    """A sample without stored outputs: the server's answer, judged once by the descriptor's reference,
    becomes its expected outputs (REFERENCE_RTOL / REFERENCE_ATOL). ValueError when the answer is wrong."""
    import tritonclient.http as httpclient

    url = host.split("://", 1)[-1].rstrip("/")
    with httpclient.InferenceServerClient(url, ssl=host.startswith("https")) as client:
        names = [o["name"] for o in client.get_model_metadata(desc.model)["outputs"]]
        inputs = []
        for t in sample.inputs:
            inp = httpclient.InferInput(t.name, list(t.shape), t.datatype)
            inp.set_data_from_numpy(t.array())
            inputs.append(inp)
        result = client.infer(desc.model, inputs, outputs=[httpclient.InferRequestedOutput(n) for n in names])
    answer = {n: result.as_numpy(n) for n in names}
    problem = descriptor.check(desc, sample, answer)
    if problem:
        raise ValueError(f"model {desc.model}: the first answer fails its reference {desc.reference!r}: {problem}")
    tensors = []
    for name, y in answer.items():
        datatype = result.get_output(name)["datatype"]
        tensors.append(descriptor.Tensor(name, datatype, tuple(y.shape), descriptor.values(y),
                                         REFERENCE_RTOL, REFERENCE_ATOL))
    return descriptor.Sample(sample.inputs, tensors)


@functools.cache
def _pool(host: str, repository: str, model: str, binary: bool
          ) -> list[tuple[str, str, tuple[bytes, dict], tuple[prepared.Output, ...]]]:
    """POOL_PER_MODEL prepared requests per model: (model, path, (body, headers), expected outputs)."""
    opts = type("Opts", (), {"repository": repository, "model": model})
    pool = []
    for desc in descriptors(opts):
        requests = []
        for sample in desc.samples:
            if not sample.outputs:
                sample = _judged_by_reference(host, desc, sample)
            want = tuple(prepared.expected_output(t) for t in sample.outputs)
            requests.append((prepared.http_request(sample, [w.name for w in want], binary), want))
        path = f"/v2/models/{desc.model}/infer"
        pool += [(desc.model, path, *requests[i % len(requests)]) for i in range(POOL_PER_MODEL)]
    random.shuffle(pool)
    return pool


class ModelsHttpUser(PreparedHttpUser):
    """POST /v2/models/<model>/infer with the descriptors' samples, prepared; every answer checked against
    the sample's expected outputs (or the reference-judged first answer)."""

    @staticmethod
    def prepare(host: str, opts) -> list:
        return _pool(host, opts.repository, opts.model, opts.binary)

    def on_start(self):
        super().on_start()
        self.protocol = "binary" if self.binary else "json"
        self.shorts = {}

    @task
    def infer(self):
        model, path, request, want = next(self.requests)
        self.name = f"{model} [{self.protocol}]"
        short = self.shorts.get(model) or self.shorts.setdefault(model, _short(model))
        if self.binary:
            check = lambda body, length: prepared.check_binary_answer(body, length, want)  # noqa: E731
        else:
            check = lambda body, _length: prepared.check_json_answer(body, want)  # noqa: E731
        post_checked(self, path, request, check, short)
