"""What the Locust files (linear.py, embed.py) share: SIGINT through gevent's hub, the HTTP client,
a prepared request POSTed, its answer checked and the outcome reported as Locust's request event, and
the HTTP user's start and stop around a pool of prepared requests.

Importing this module takes SIGINT (see below); its one User is abstract, so Locust runs none of it.
"""
from __future__ import annotations

import logging
import signal
import time
from urllib.parse import urlsplit

import itertools
import random

import gevent
from geventhttpclient import HTTPClient
from locust import User
# Importing the gate installs its event hooks (its arguments, thresholds, verdict and pacing).
from slo_gate import WrongAnswer

log = logging.getLogger("loadtests")


def _interrupt_main() -> None:
    """Ctrl-C, delivered as Locust's main greenlet expects it: it writes the HTML report and stops."""
    gevent.get_hub().parent.throw(KeyboardInterrupt)


# SIGINT (Ctrl-C; tritonops.bench.locustcost stops Locust with it) is taken through gevent's hub, as Locust
# takes SIGTERM. Python's own handler raised KeyboardInterrupt in whichever greenlet ran: inside a gRPC
# call it left a lock held and Locust hung at exit (1 bench smoke run in 3 under load). It also takes
# SIGINT back when Locust starts with it ignored, as a background job (`make test &`) does (POSIX).
gevent.signal_handler(signal.SIGINT, _interrupt_main)


def settle_clock() -> None:
    """Call after work that blocked for seconds before or outside gevent's loop (torch or transformers
    loading, request pools): the loop's cached clock stays where it was, and Locust's -t timer, started
    from it, fired that much early (a 3 s run stopped after 0.8 s with 0 requests)."""
    gevent.get_hub().loop.update_now()


def http_client(host: str) -> HTTPClient:
    """geventhttpclient's client, the one under FastHttpUser, without its session and user-agent layers
    (URL parsing, cookies, header objects, gzip: about half the client CPU per request). One keep-alive
    connection per user; no Accept-Encoding, so the server does not compress every answer."""
    url = urlsplit(host)
    return HTTPClient(url.hostname or "127.0.0.1", url.port, ssl=url.scheme == "https", insecure=True,
                      connection_timeout=60, network_timeout=60, concurrency=1)


def verdict(name: str, check, short) -> WrongAnswer | None:
    """Run an answer check (a callable returning the problem, or None when the answer is right) as a
    Locust failure: an answer that does not even parse is a wrong answer too. short(problem) is the
    failure's text, without per-request numbers, so Locust can group it."""
    try:
        problem = check()
    except Exception as exc:  # noqa: BLE001 - an unparsable answer is a failed request
        problem = f"unparsable response: {type(exc).__name__}: {exc}"
    if not problem:
        return None
    log.debug("%s: %s", name, problem)
    return WrongAnswer(short(problem))


def post_checked(user, path: str, request: tuple[bytes, dict], check, short) -> None:
    """POST a prepared (body, headers) on user.client; check(body, header_length) judges a 200 answer
    (header_length: the binary extension's JSON header size, None for a JSON answer); the outcome goes
    to Locust as a request named user.name, through user.fire (the environment's request event)."""
    error, body = None, b""
    start = time.perf_counter()
    try:
        response = user.client.request("POST", path, *request)
        body = response.read()
        response.release()
        elapsed_ms = (time.perf_counter() - start) * 1000
        if response.status_code != 200:
            error = WrongAnswer(f"HTTP {response.status_code}: {body[:200].decode(errors='replace')}")
        else:
            length = response.get("inference-header-content-length")
            error = verdict(user.name, lambda: check(body, int(length) if length else None), short)
    except Exception as exc:  # noqa: BLE001 - refused, reset, timed out: a failed request
        elapsed_ms = (time.perf_counter() - start) * 1000
        error = exc
    user.fire(request_type="POST", name=user.name, response_time=elapsed_ms, response_length=len(body),
              exception=error, context={})


class PreparedHttpUser(User):
    """A user that POSTs prepared requests from a pool: `model` names it, `prepare(host, opts)` returns
    the pool (built once per process), the subclass's task sends them with post_checked. Each user starts
    at a random place in the pool, on its own keep-alive connection."""

    abstract = True
    model = ""

    @staticmethod
    def prepare(host: str, opts) -> list:
        raise NotImplementedError

    @classmethod
    def prepare_at_init(cls, environment, runner) -> None:
        """The pool now, before Locust's clock starts (an init listener calls this). A master runs no
        users; with no server yet, the user's on_start meets it again and reports it."""
        from locust.runners import MasterRunner

        if environment.parsed_options is None or isinstance(runner, MasterRunner) or not environment.host:
            return
        try:
            cls.prepare(environment.host, environment.parsed_options)
        except Exception:  # noqa: BLE001 - reported by on_start, where a failure counts
            log.debug("request pool not prepared at start", exc_info=True)
        settle_clock()

    def on_start(self):
        self.binary = self.environment.parsed_options.binary
        self.name = f"{self.model} [{'binary' if self.binary else 'json'}]"
        pool = self.prepare(self.host, self.environment.parsed_options)
        self.requests = itertools.islice(itertools.cycle(pool), random.randrange(len(pool)), None)
        self.client = http_client(self.host)
        self.fire = self.environment.events.request.fire

    def on_stop(self):
        self.client.close()
