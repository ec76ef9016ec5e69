"""`make bench` and its helpers: perf_analyzer, the open-loop sweep, the tuning knobs, embed's batching,
the server's batch statistics, Locust's client cost, the plots. The top layer below tritonops.cli."""
