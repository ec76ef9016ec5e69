"""`make bench`'s rows for a model no project file mentions, from its descriptor's sample: perf_analyzer's
--input-data built from it (one step per row), and a measured row against a real server serving only
that model (tally_kit: INT32 + BYTES inputs). Smoke settings: one level, short windows, loose stability."""
from __future__ import annotations

from repos import BYOM_MODEL, build_byom_repository

from tritonops.bench import perf_analyzer, suite
from tritonops.models import descriptor


def test_input_data_has_one_step_per_row_of_the_sample():
    doc = {"samples": [{"inputs": {"n": {"datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]},
                                   "w": {"datatype": "BYTES", "shape": [2, 1], "data": ["a", "b"]}},
                        "outputs": {"y": {"datatype": "INT32", "shape": [2], "data": [3, 7]}}}]}
    (sample,) = descriptor.parse(descriptor.Path("m/tritonops.json"), doc).samples
    assert suite.descriptor_input_data(sample, batched=True) == {"data": [
        {"n": {"content": [1, 2], "shape": [2]}, "w": {"content": ["a"], "shape": [1]}},
        {"n": {"content": [3, 4], "shape": [2]}, "w": {"content": ["b"], "shape": [1]}}]}
    assert suite.descriptor_input_data(sample, batched=False) == {"data": [
        {"n": {"content": [1, 2, 3, 4], "shape": [2, 2]}, "w": {"content": ["a", "b"], "shape": [2, 1]}}]}


def test_bench_measures_a_model_from_its_descriptor(tmp_path):
    repo = build_byom_repository(tmp_path)
    notes: list[str] = []
    opts = perf_analyzer.Options(measurement_ms=500, stability_pct=1000, log_path=tmp_path / "perf_analyzer.log")
    rows = suite.descriptor_rows(repo, [2], opts, tmp_path / "out", notes)
    assert notes == []
    (row,) = rows
    assert (row.model, row.tool, row.concurrency) == (BYOM_MODEL, "perf_analyzer", 2)
    assert row.throughput > 0 and row.p99_ms > 0
    assert (tmp_path / "out" / f"{BYOM_MODEL}.input-data.json").is_file()
    assert f"| {BYOM_MODEL} " in suite.markdown(rows, [], "header")
    suite.plot(rows, tmp_path / "bench.png", "title")  # a model the bench does not name is plotted too
    assert (tmp_path / "bench.png").stat().st_size > 0
