"""No server needed: the thresholds file (its reader, and Locust refusing a bad one before any user
runs, for either model's Locust file), the benchmark models' configs, the metrics arithmetic, a hung Locust."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonops import settings
from tritonops.bench import embed, suite
from tritonops.models import embedding, linear, validate
from tritonops.serving import loadgate, metrics


def test_committed_thresholds_have_every_target():
    for target in ("local-cpu", "local-cpu-embed", "gpu"):
        limits = loadgate.load_thresholds(loadgate.THRESHOLDS, target)
        assert limits.p95_ms > 0 and limits.min_rps > 0 and limits.max_failures == 0


@pytest.mark.parametrize("text, message", [
    ("[other]\np95_ms = 1\nmin_rps = 1\n", "no [t] table (targets: other)"),
    ("[t]\nmin_rps = 1\n", "[t] p95_ms is missing"),
    ("[t]\np95_ms = 'fast'\nmin_rps = 1\n", "[t] p95_ms = 'fast' must be a number"),
    ("[t]\np95_ms = 10\nmin_rps = -5\n", "[t] min_rps = -5 must be > 0"),
    ("[t]\np95_ms = 10\nmin_rps = 5\nmax_failures = 0.5\n", "[t] max_failures = 0.5 must be an integer"),
    ("[t]\np95_ms = 10\nmin_rps = 5\nmin_rate_share = 1.5\n", "[t] min_rate_share = 1.5 must be <= 1"),
    ("[t]\np95_ms = 10\nmin_rps = 5\np59_ms = 3\n", "unknown field(s) p59_ms"),
    ("[t\np95_ms = 10\n", "not valid TOML"),
])
def test_bad_thresholds_name_file_target_and_field(tmp_path, text, message):
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    with pytest.raises(loadgate.GateError) as err:
        loadgate.load_thresholds(path, "t")
    assert str(path) in str(err.value) and message in str(err.value)


def test_make_loadtest_reports_a_bad_target_without_running_users(tmp_path):
    """The wrapper passes the target to Locust; Locust's init hook refuses it before any user starts."""
    done = subprocess.run([sys.executable, "-m", "tritonops.serving.loadgate", "--url", "127.0.0.1:1", "--target", "nope",
                           "--report-dir", str(tmp_path)], cwd=settings.ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"error: {loadgate.THRESHOLDS}: no [nope] table (targets: local-cpu, local-cpu-embed, gpu)" in done.stderr
    assert not (tmp_path / "summary.md").exists() and (tmp_path / "locust_stats.csv").stat().st_size == 0  # opened, empty
    assert "Ramping to" not in (tmp_path / "locust.log").read_text()


def test_plain_locust_refuses_a_bad_field_naming_file_table_and_field(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text("[t]\np95_ms = 'fast'\nmin_rps = 1\n")
    done = subprocess.run([sys.executable, "-m", "locust", "-f", str(loadgate.LOCUSTFILE), "--headless", "-u", "1",
                           "-t", "2s", "-H", "http://127.0.0.1:1", "--slo", "t", "--slo-file", str(path)],
                          cwd=settings.ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"error: {path}: [t] p95_ms = 'fast' must be a number" in done.stderr
    assert "Ramping to" not in done.stderr and "Aggregated" not in done.stdout  # no user ran


def test_make_loadtest_model_embed_runs_its_locust_file_against_its_own_table(tmp_path):
    """MODEL=embed: loadtests/embed.py, judged by default against [local-cpu-embed] (a file without it is
    refused, naming it) and refusing a bad field as linear's file does; no user runs in either case."""
    path = tmp_path / "thresholds.toml"
    path.write_text("[local-cpu]\np95_ms = 10\nmin_rps = 5\n[t]\np95_ms = 10\nmin_rps = 0\n")
    for target, message in (("", f"error: {path}: no [local-cpu-embed] table (targets: local-cpu, t)"),
                            ("t", f"error: {path}: [t] min_rps = 0 must be > 0")):
        done = subprocess.run(
            ["make", "--no-print-directory", "-o", ".venv/.installed", "loadtest", "MODEL=embed", "URL=127.0.0.1:1",
             "USERS=1", "DURATION=2s", f"TARGET={target}", f"LOADTEST_ARGS=--thresholds {path} --report-dir {tmp_path}"],
            cwd=settings.ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and "loadtest] Error 2" in done.stderr, done.stdout + done.stderr
        assert message in done.stderr, done.stderr
        assert f"-f {loadgate.MODELS['embed'][0]} " in done.stdout
        assert "Ramping to" not in (tmp_path / "locust.log").read_text()


def test_loadtest_refuses_a_user_class_of_the_other_model(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tritonops.serving.loadgate", "--model", "embed", "--user-class",
                           "LinearGrpcUser", "--report-dir", str(tmp_path)], cwd=settings.ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "--user-class LinearGrpcUser: not a user of --model embed (EmbedHttpUser)" in done.stderr


def test_embed_bench_variant_differs_from_the_shipped_repository_only_in_batching(tmp_path):
    """bench.embed's no-batching copy: the embed pipeline, its steps' configs without dynamic_batching."""
    copy = embed.unbatched(tmp_path / "unbatched")
    assert validate.validate_repository(copy) == []
    assert {p.name for p in copy.iterdir()} == {embedding.TOKENIZER, embedding.ENCODER, embedding.MODEL}
    for name in embed.PIPELINE:
        ours, theirs = (text_format.Parse((r / name / "config.pbtxt").read_text(), mc.ModelConfig())
                        for r in (copy, settings.MODEL_REPOSITORY))
        if name in (embedding.TOKENIZER, embedding.ENCODER):
            assert theirs.HasField("dynamic_batching") and not ours.HasField("dynamic_batching"), name
            theirs.ClearField("dynamic_batching")
            assert (copy / name / embedding.VERSION).resolve() == (settings.MODEL_REPOSITORY / name / embedding.VERSION).resolve()
        assert ours == theirs, name


def _scheduling(path: Path) -> tuple:
    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    return (config.max_batch_size, [text_format.MessageToString(g) for g in config.instance_group],
            text_format.MessageToString(config.dynamic_batching))


def test_identity_floor_is_scheduled_like_the_shipped_model():
    shipped = settings.MODEL_REPOSITORY / linear.MODEL / "config.pbtxt"
    floor = suite.BENCH_MODELS / "identity" / linear.MODEL / "config.pbtxt"
    assert _scheduling(floor) == _scheduling(shipped), "keep the floor's scheduling equal to the shipped config"


def test_seed_model_keeps_the_seed_scheduling():
    config = text_format.Parse((suite.BENCH_MODELS / "seed" / "linear" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.max_batch_size == 4 and not config.HasField("dynamic_batching")


@pytest.mark.parametrize("name", ["seed", "identity"])
def test_bench_models_are_valid_repositories_outside_model_repository(name):
    repo = suite.BENCH_MODELS / name
    assert validate.validate_repository(repo) == []
    assert settings.MODEL_REPOSITORY not in repo.resolve().parents


def test_server_figures_are_differences_of_two_scrapes():
    text = """# TYPE nv_inference_request_success counter
nv_inference_request_success{model="linear",version="1"} %d
nv_inference_request_success{model="other",version="1"} 999
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="linear",reason="REJECTED",version="1"} %d
nv_inference_request_failure{model="linear",reason="BACKEND",version="1"} 1
# TYPE nv_inference_count counter
nv_inference_count{model="linear",version="1"} %d
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="linear",version="1"} %d
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="linear",version="1"} %d
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="linear",version="1"} %d
"""
    before = metrics.parse(text % (10, 0, 40, 10, 1000, 500), "linear")
    after = metrics.parse(text % (110, 2, 840, 30, 21000, 10500), "linear")
    figures = metrics.difference(before, after)
    assert (figures.success, figures.failure, figures.inferences, figures.executions) == (100, 2, 800, 20)
    assert figures.avg_batch == 40
    assert figures.avg_queue_us == 200 and figures.avg_compute_us == 100


HANGS_AT_EXIT = '''
import atexit, os
from locust import User, events, task

@events.init_command_line_parser.add_listener
def _arguments(parser):
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--figures-file", default="")

class Idle(User):
    @task
    def nothing(self):
        self.wait_time = lambda: 0.2

# a child in Locust's session that outlives SIGTERM, blocking Locust's exit
atexit.register(os.system, "echo hanging; trap '' TERM; sleep 300")
'''


def test_a_locust_that_does_not_exit_is_killed_and_named(tmp_path):
    """A hung Locust (a deadlock at exit was seen once) fails its caller with its log (LocustRun.stop, as
    locustcost and the fleet drills stop it), not the whole test run."""
    import time

    import psutil

    locustfile = tmp_path / "hangs.py"
    locustfile.write_text(HANGS_AT_EXIT)
    run = loadgate.start_locust("http://127.0.0.1:9", 1, "1s", tmp_path, locustfile=locustfile)
    deadline = time.monotonic() + 120
    while "hanging" not in run.log.read_text():  # its run is over; it is stuck at exit
        assert time.monotonic() < deadline and run.proc.poll() is None, run.log.read_text()
        time.sleep(0.2)
    tree = [run.proc.pid] + [p.pid for p in psutil.Process(run.proc.pid).children(recursive=True)]
    with pytest.raises(loadgate.GateError, match=r"(?s)Locust did not exit within 3 s of SIGTERM: killed; its log .*hanging"):
        run.stop(timeout=3)
    # SIGKILL lands when each process next runs: on a busy box a child may still show as sleeping just
    # after killpg returns, so wait a little for the tree to be gone (or a zombie nobody reaps yet).
    deadline = time.monotonic() + 10
    while (alive := [pid for pid in tree if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, [psutil.Process(pid).cmdline() for pid in alive if _alive(pid)]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("duration, seconds", [("30", 30), ("30s", 30), ("2m", 120), ("1h30m", 5400), ("1h2m3s", 3723)])
def test_run_time_reads_locusts_formats(duration, seconds):
    assert loadgate.run_seconds(duration) == seconds


@pytest.mark.parametrize("duration", ["", "soon", "3x", "1m2h"])
def test_bad_run_time_is_named(duration):
    with pytest.raises(loadgate.GateError, match=f"run time {duration!r}: expected"):
        loadgate.run_seconds(duration)


def test_descriptor_thresholds_take_the_strictest_slo_of_the_models():
    limits = loadgate.descriptor_thresholds({"a": {"p99_ms": 500, "max_error_rate": 0.01},
                                             "b": {"p99_ms": 2000, "max_error_rate": 0.0}})
    assert (limits.p99_ms, limits.max_error_rate, limits.p95_ms, limits.min_rps) == (500, 0.0, None, None)
    assert limits.target == f"{loadgate.DESCRIPTOR_TARGET} (a, b)"


def test_loadtest_of_a_model_the_repository_lacks_names_its_models(tmp_path):
    """Any model other than linear/embed goes through loadtests/models.py; one the repository does not hold
    is refused before Locust starts, naming the repository's models."""
    done = subprocess.run([sys.executable, "-m", "tritonops.cli", "loadtest", "--model", "nosuch",
                           "--report-dir", str(tmp_path)], cwd=settings.ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "--model nosuch: model nosuch: not in" in done.stderr and "linear" in done.stderr, done.stderr
