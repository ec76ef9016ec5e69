"""Locust load test for the `linear` model: KServe v2 over HTTP (JSON or binary tensors) or gRPC.

    locust -f loadtests/linear.py --headless -u 16 -r 16 -t 30s -H http://127.0.0.1:8000
    locust -f loadtests/linear.py -H http://gpu-host:8000                       # web UI on :8089
    locust -f loadtests/linear.py --binary ...                      # binary tensor extension
    locust -f loadtests/linear.py LinearGrpcUser -H http://gpu-host:8000        # gRPC (port GRPC_PORT)
    locust -f loadtests/linear.py --processes -1 ...                # one worker per CPU core

Pick the protocol with Locust's user classes: LinearHttpUser (the default when none is named) or
LinearGrpcUser. Each request carries a random batch of 1..max_batch_size rows (the server's own
config, read at start) or a fixed --batch-size. Every answer is checked against the torch reference
of the committed weights (tritonops.contract); a wrong answer is a failure, not a success.
"""
from __future__ import annotations

import functools
import logging
import time
from urllib.parse import urlsplit

# gRPC's blocking calls must yield to gevent, or one gRPC user would stall all the others.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import numpy as np  # noqa: E402
from locust import FastHttpUser, User, constant_throughput, events, task  # noqa: E402
from locust.runners import WorkerRunner  # noqa: E402

from tritonops import contract, settings  # noqa: E402

log = logging.getLogger("loadtests.linear")
DEFAULT_USER = "LinearHttpUser"


@events.init_command_line_parser.add_listener
def _arguments(parser):
    parser.add_argument("--binary", action="store_true", default=False,
                        help="HTTP: send and receive tensors with the binary tensor extension instead of JSON")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="rows per request; 0 (default) mixes 1..max_batch_size from the model config")
    parser.add_argument("--grpc-host", default="",
                        help=f"gRPC host:port for LinearGrpcUser (default: the -H host, port {settings.port('grpc')})")
    parser.add_argument("--rate-per-user", type=float, default=0,
                        help="requests a second each user sends at most (a steady load beside other work); "
                             "0 (default): as fast as answers come")


@events.init.add_listener
def _default_user(environment, runner, **_kwargs):
    """No user class named: run HTTP only (not a 50/50 mix). Workers take what the master sends."""
    opts = environment.parsed_options
    if opts is not None and not opts.user_classes and not isinstance(runner, WorkerRunner):
        environment.user_classes[:] = [u for u in environment.user_classes if u.__name__ == DEFAULT_USER]


@events.init.add_listener
def _pace(environment, **_kwargs):
    """--rate-per-user: each user waits between requests so as to send at most that many a second."""
    opts = environment.parsed_options
    if opts is not None and opts.rate_per_user > 0:
        for user in (LinearHttpUser, LinearGrpcUser):
            user.wait_time = constant_throughput(opts.rate_per_user)


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


class WrongAnswer(Exception):
    """A response that arrived but is not the model's answer."""


@functools.cache
def _max_batch_size(protocol: str, address: str) -> int:
    """max_batch_size from the served model's config (once per process and server)."""
    if protocol == "grpc":
        with _grpc_client(address) as client:
            config = client.get_model_config(contract.MODEL, contract.VERSION, as_json=True)["config"]
    else:
        import tritonclient.http as httpclient

        with httpclient.InferenceServerClient(address, ssl=protocol == "https") as client:
            config = client.get_model_config(contract.MODEL, contract.VERSION)
    return int(config.get("max_batch_size", 0))


def _batch_sizes(user: User, protocol: str, address: str) -> np.ndarray:
    wanted = user.environment.parsed_options.batch_size
    limit = _max_batch_size(protocol, address)
    if limit <= 0:
        raise ValueError(f"model {contract.MODEL} on {address} has max_batch_size {limit}: it does not batch")
    if wanted < 0 or wanted > limit:
        raise ValueError(f"--batch-size {wanted} is outside 1..{limit} (max_batch_size of {contract.MODEL} on {address})")
    return np.array([wanted]) if wanted else np.arange(1, limit + 1)


def _short(problem: str) -> str:
    """Failure text Locust can group: the check's message without the per-request numbers."""
    return "wrong answer: " + problem.split(": row ")[0]


class LinearHttpUser(FastHttpUser):
    """POST /v2/models/linear/versions/1/infer; bodies built and answers parsed by tritonops.contract."""

    path = f"/v2/models/{contract.MODEL}/versions/{contract.VERSION}/infer"

    def on_start(self):
        url = urlsplit(self.host)
        self.binary = self.environment.parsed_options.binary
        self.name = f"{contract.MODEL} [{'binary' if self.binary else 'json'}]"
        self.rng = np.random.default_rng()
        self.sizes = _batch_sizes(self, url.scheme or "http", url.netloc or url.path)

    @task
    def infer(self):
        x = contract.random_batch(int(self.rng.choice(self.sizes)), self.rng)
        body, headers = contract.http_body(x, self.binary)
        with self.client.post(self.path, data=body, headers=headers, name=self.name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            try:
                problem = contract.check_output(x, contract.parse_http_response(resp.content, resp.headers))
            except Exception as exc:  # noqa: BLE001 - an unparsable answer is a failed request
                problem = f"unparsable response: {type(exc).__name__}: {exc}"
            if problem:
                log.debug("%s: %s", self.name, problem)
                resp.failure(_short(problem))
            else:
                resp.success()


class LinearGrpcUser(User):
    """ModelInfer over gRPC with tritonclient.grpc, reported to Locust like an HTTP request."""

    def on_start(self):
        opts = self.environment.parsed_options
        http = urlsplit(self.host or "")
        self.address = opts.grpc_host or f"{http.hostname or '127.0.0.1'}:{settings.port('grpc')}"
        self.name = f"{contract.MODEL} [grpc]"
        self.rng = np.random.default_rng()
        self.sizes = _batch_sizes(self, "grpc", self.address)
        self.client = _grpc_client(self.address)

    def on_stop(self):
        self.client.close()

    @task
    def infer(self):
        from tritonclient.utils import InferenceServerException

        x = contract.random_batch(int(self.rng.choice(self.sizes)), self.rng)
        inputs, outputs = contract.grpc_inputs(x)
        error, length = None, 0
        start = time.perf_counter()
        try:
            result = self.client.infer(contract.MODEL, inputs, model_version=contract.VERSION, outputs=outputs)
            elapsed_ms = (time.perf_counter() - start) * 1000
            length = result.get_response().ByteSize()
            problem = contract.check_output(x, result.as_numpy(contract.OUTPUT))
            if problem:
                log.debug("%s: %s", self.name, problem)
                error = WrongAnswer(_short(problem))
        except InferenceServerException as exc:
            elapsed_ms = (time.perf_counter() - start) * 1000
            error = exc
        self.environment.events.request.fire(request_type="grpc", name=self.name, response_time=elapsed_ms,
                                             response_length=length, exception=error, context={})
