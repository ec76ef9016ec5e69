"""Locust load test for the `linear` model: KServe v2 over HTTP (JSON or binary tensors) or gRPC.

    locust -f loadtests/linear.py --headless -u 16 -r 16 -t 30s -H http://127.0.0.1:8000
    locust -f loadtests/linear.py -H http://gpu-host:8000                       # web UI on :8089
    locust -f loadtests/linear.py --binary ...                      # binary tensor extension
    locust -f loadtests/linear.py LinearGrpcUser -H http://gpu-host:8000        # gRPC (port GRPC_PORT)
    locust -f loadtests/linear.py --processes -1 ...                # one worker per CPU core
    locust -f loadtests/linear.py --headless ... --slo local-cpu    # gate: exit 1 if the SLO is missed
    locust -f loadtests/linear.py --headless ... --target-rps 500   # open loop: 500 req/s in all

Pick the protocol with Locust's user classes: LinearHttpUser (the default when none is named) or
LinearGrpcUser. Each request carries a random batch of 1..max_batch_size rows (the server's own
config, read at start) or a fixed --batch-size. Every answer is checked against the torch reference
of the committed weights (tritonops.models.linear's rules: shape, dtype, np.allclose's tolerance); a wrong
answer is a failure, not a success.

The request path is cheap, so Locust measures the server and not itself: at start each process builds
a pool of requests (random batches, encoded as tritonclient encodes them) with their answers computed
once by the torch reference; per request a user sends prepared bytes and compares the answer's values
with the prepared ones (no torch, no tritonclient). `python -m tritonops.bench.locustcost` prices it.

The SLO gate (--slo, --target-rps, --rate-per-user, ...) is loadtests/slo_gate.py's event hooks.
"""
from __future__ import annotations

import functools
import itertools
import logging
import random
import time
from urllib.parse import urlsplit

# gRPC's blocking calls must yield to gevent, or one gRPC user would stall all the others.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from locust import User, events, task  # noqa: E402
from locust.runners import MasterRunner, WorkerRunner  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402
# common: SIGINT through gevent's hub, the HTTP request path; it imports the gate, which installs its
# event hooks (its arguments, thresholds, verdict and pacing).
from common import PreparedHttpUser, post_checked, settle_clock, verdict  # noqa: E402

from tritonops import settings  # noqa: E402
from tritonops.models import linear  # noqa: E402

log = logging.getLogger("loadtests.linear")
linear.reference(linear.SEED_X)  # torch and the weights load now, before Locust starts its run and its clock
settle_clock()  # that load blocked for seconds before gevent's loop runs
DEFAULT_USER = "LinearHttpUser"
# Requests prepared per process and protocol (a fixed --batch-size: all of that size; mixed sizes:
# POOL_REQUESTS spread over them, at least POOL_MIN_PER_SIZE each). Users cycle through them.
POOL_REQUESTS = 1024
POOL_MIN_PER_SIZE = 16


@events.init_command_line_parser.add_listener
def _arguments(parser):
    parser.add_argument("--binary", action="store_true", default=False,
                        help="HTTP: send and receive tensors with the binary tensor extension instead of JSON")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="rows per request; 0 (default) mixes 1..max_batch_size from the model config")
    parser.add_argument("--grpc-host", default="",
                        help=f"gRPC host:port for LinearGrpcUser (default: the -H host, port {settings.port('grpc')})")


@events.init.add_listener
def _default_user(environment, runner, **_kwargs):
    """No user class named: run HTTP only (not a 50/50 mix). Workers take what the master sends."""
    opts = environment.parsed_options
    if opts is not None and not opts.user_classes and not isinstance(runner, WorkerRunner):
        environment.user_classes[:] = [u for u in environment.user_classes if u.__name__ == DEFAULT_USER]


@events.init.add_listener
def _prepare(environment, runner, **_kwargs):
    """Build the request pools now, before Locust's clock starts: built in a user's on_start, they took
    part of a short run (-t) and held back an open-loop run's first requests. A master runs no users."""
    opts = environment.parsed_options
    if opts is None or isinstance(runner, MasterRunner) or not environment.host:
        return
    wanted = opts.user_classes or [DEFAULT_USER]
    for user in environment.user_classes:
        if user.__name__ in wanted:
            try:
                user.prepare(environment.host, opts)
            except Exception:  # noqa: BLE001 - no server (yet): the user's on_start meets it again and reports it
                log.debug("request pool for %s not prepared at start", user.__name__, exc_info=True)
    settle_clock()  # as after the torch load above: the pools blocked the loop


def _grpc_client(address: str):
    """A tritonclient gRPC client the caller closes itself, exactly once.

    tritonclient's __del__ closes the channel again. Under gevent that second close can run inside the
    garbage collector while this thread holds grpc's channel mutex, and the process deadlocks at exit
    (seen: `locust` hung after its run, stuck in Channel.close from __del__). So __del__ does nothing.
    """
    import tritonclient.grpc as grpcclient

    class Client(grpcclient.InferenceServerClient):
        def __del__(self):
            pass

    return Client(address)


@functools.cache
def _max_batch_size(protocol: str, address: str) -> int:
    """max_batch_size from the served model's config (once per process and server)."""
    if protocol == "grpc":
        with _grpc_client(address) as client:
            config = client.get_model_config(linear.MODEL, linear.VERSION, as_json=True)["config"]
    else:
        import tritonclient.http as httpclient

        with httpclient.InferenceServerClient(address, ssl=protocol == "https") as client:
            config = client.get_model_config(linear.MODEL, linear.VERSION)
    return int(config.get("max_batch_size", 0))


def _batch_sizes(opts, protocol: str, address: str) -> tuple[int, ...]:
    wanted = opts.batch_size
    limit = _max_batch_size(protocol, address)
    if limit <= 0:
        raise ValueError(f"model {linear.MODEL} on {address} has max_batch_size {limit}: it does not batch")
    if wanted < 0 or wanted > limit:
        raise ValueError(f"--batch-size {wanted} is outside 1..{limit} (max_batch_size of {linear.MODEL} on {address})")
    return (wanted,) if wanted else tuple(range(1, limit + 1))


def _short(problem: str) -> str:
    """Failure text Locust can group: the check's message without the per-request numbers."""
    return "wrong answer: " + problem.split(": row ")[0]


@functools.cache
def _pool(protocol: str, sizes: tuple[int, ...]) -> list[tuple[object, linear.Expected]]:
    """POOL_REQUESTS prepared requests (random batches of the given sizes) with their expected answers.

    Built once per process and protocol at start: the torch reference runs here (once per batch size, on
    all that size's rows), and each request is encoded here (HTTP: body and headers as tritonclient builds
    them; gRPC: the serialized ModelInferRequest). Users cycle through it.
    """
    rng = np.random.default_rng()
    per_size = max(POOL_MIN_PER_SIZE, POOL_REQUESTS // len(sizes))
    pool = []
    for rows in sizes:
        xs = linear.random_batch(per_size * rows, rng)
        wants = linear.reference(xs)  # one torch call for every request of this size
        for i in range(per_size):
            x, want = xs[i * rows:(i + 1) * rows], wants[i * rows:(i + 1) * rows]
            if protocol == "grpc":
                request = linear.grpc_request(x).SerializeToString()
            else:
                body, headers = linear.http_body(x, binary=protocol == "binary")
                request = (body, headers)
            pool.append((request, linear.expected(x, want)))
    random.shuffle(pool)
    return pool


class LinearHttpUser(PreparedHttpUser):
    """POST /v2/models/linear/versions/1/infer with prepared requests; every answer checked against the
    torch reference computed at start (tritonops.models.linear's rules and messages)."""

    model = linear.MODEL
    path = f"/v2/models/{linear.MODEL}/versions/{linear.VERSION}/infer"

    @staticmethod
    def prepare(host: str, opts) -> list:
        url = urlsplit(host)
        sizes = _batch_sizes(opts, url.scheme or "http", url.netloc or url.path)
        return _pool("binary" if opts.binary else "json", sizes)

    @task
    def infer(self):
        request, want = next(self.requests)
        if self.binary:
            check = lambda body, length: linear.check_binary_answer(body, length, want)  # noqa: E731
        else:
            check = lambda body, _length: linear.check_json_answer(body, want)  # noqa: E731
        post_checked(self, self.path, request, check, _short)


class CheckedCalls(grpc.UnaryUnaryClientInterceptor):
    """Locust's gRPC pattern (its docs' gRPC example): the channel's interceptor times each call and fires
    Locust's request event. It also checks each answer against the one prepared with its request (looked
    up by the request's bytes: the pool's own objects, whose hash Python keeps)."""

    def __init__(self, environment, name: str, expected: dict[bytes, linear.Expected]):
        from tritonclient.grpc import service_pb2

        self.fire = environment.events.request.fire
        self.name = name
        self.expected = expected
        self.parse = service_pb2.ModelInferResponse.FromString

    def intercept_unary_unary(self, continuation, client_call_details, request):
        error, length = None, 0
        start = time.perf_counter()
        outcome = continuation(client_call_details, request)
        try:
            answer = outcome.result()
            elapsed_ms = (time.perf_counter() - start) * 1000
            length = len(answer)
            error = verdict(self.name, lambda: linear.check_grpc_answer(self.parse(answer), self.expected[request]),
                            _short)
        except grpc.RpcError as exc:
            elapsed_ms = (time.perf_counter() - start) * 1000
            error = InferenceServerException(msg=exc.details(), status=str(exc.code()))  # as tritonclient says it
        self.fire(request_type="grpc", name=self.name, response_time=elapsed_ms, response_length=length,
                  exception=error, context={})
        return outcome


class LinearGrpcUser(User):
    """ModelInfer over gRPC with prepared, serialized requests (bytes in, bytes out) on a channel whose
    interceptor (CheckedCalls) reports each call to Locust and checks its answer as over HTTP."""

    @staticmethod
    def prepare(host: str, opts) -> list:
        address = opts.grpc_host or settings.address_on(host, "grpc")
        return _pool("grpc", _batch_sizes(opts, "grpc", address))

    def on_start(self):
        opts = self.environment.parsed_options
        address = opts.grpc_host or settings.address_on(self.host or "", "grpc")
        pool = self.prepare(self.host or "", opts)
        self.requests = itertools.islice(itertools.cycle(pool), random.randrange(len(pool)), None)
        self.channel = grpc.insecure_channel(address)
        checked = grpc.intercept_channel(self.channel, CheckedCalls(self.environment, f"{linear.MODEL} [grpc]",
                                                                    dict(pool)))
        self.model_infer = checked.unary_unary("/inference.GRPCInferenceService/ModelInfer")

    def on_stop(self):
        self.channel.close()

    @task
    def infer(self):
        try:
            self.model_infer(next(self.requests)[0])
        except grpc.RpcError:
            pass  # reported to Locust by the interceptor
