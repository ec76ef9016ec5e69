"""The model repository and what tritonops knows about each model: descriptors (tritonops.json) and their
checks, `linear`'s and `embed`'s contracts and references, the embed files fetched from the pinned wheel,
training. Imports only tritonops.settings."""
