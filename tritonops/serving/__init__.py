"""Running and checking a Triton server: the local server, its admin key, smoke, the load gate, Triton's
metrics and the canary's verdict. Imports tritonops.models and tritonops.settings, nothing above."""
