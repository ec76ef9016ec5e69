"""A model's descriptor: `tritonops.json` beside its config.pbtxt, what tritonops knows about the model.

Triton ignores the file (it reads config.pbtxt and the version directories only); `tritonops contract`
writes it from a running server's answers, `tritonops validate` checks it against config.pbtxt and
`tritonops smoke` sends its samples. The format (SCHEMA below; docs/models.md, Add your model):

    {
      "samples": [                               # requests with their expected answers
        {"inputs":  {"<name>": {"datatype": "INT32", "shape": [2, 3], "data": [...]}},
         "outputs": {"<name>": {"datatype": "FP32", "shape": [2, 1], "data": [...],
                                "rtol": 1e-5, "atol": 1e-5}}}      # tolerances optional (default below)
      ],
      "reference": "embed",       # optional: outputs checked by a named function of tritonops (REFERENCES)
      "health_check": true,       # optional (default true): the model's readiness is part of the server's
      "slo": {"p99_ms": 100},     # optional: thresholds; DEFAULT_SLO for the keys left out
      "ensemble_step_of": "embed" # instead of samples: reached only through that ensemble, not smoked alone
    }

`data` is the tensor flattened in row-major order (KServe v2 JSON's flat form); BYTES data are UTF-8
strings. A sample that names a reference may leave `outputs` out: the function judges the answer.
Why not perf_analyzer's --input-data JSON: its `validation_data` compares outputs exactly, with no
tolerance, which float outputs computed on another device or torch build do not meet.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

FILENAME = "tritonops.json"
DEFAULT_RTOL, DEFAULT_ATOL = 1e-5, 1e-5
DEFAULT_SLO = {"p99_ms": 1000.0, "max_error_rate": 0.0}

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"]
_TENSOR = {
    "type": "object",
    "required": ["datatype", "shape", "data"],
    "additionalProperties": False,
    "properties": {
        "datatype": {"enum": DATATYPES},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "data": {"type": "array", "items": {"type": ["number", "string", "boolean"]}},
        "rtol": {"type": "number", "minimum": 0},
        "atol": {"type": "number", "minimum": 0},
    },
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "tritonops model descriptor (tritonops.json)",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "samples": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["inputs"],
                "additionalProperties": False,
                "properties": {
                    "inputs": {"type": "object", "minProperties": 1, "additionalProperties": _TENSOR},
                    "outputs": {"type": "object", "additionalProperties": _TENSOR},
                },
            },
        },
        "reference": {"type": "string"},
        "health_check": {"type": "boolean"},
        "slo": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"p99_ms": {"type": "number", "exclusiveMinimum": 0},
                           "max_error_rate": {"type": "number", "minimum": 0, "maximum": 1}},
        },
        "ensemble_step_of": {"type": "string", "minLength": 1},
    },
    "oneOf": [{"required": ["samples"], "not": {"required": ["ensemble_step_of"]}},
              {"required": ["ensemble_step_of"], "not": {"required": ["samples"]}}],
}


class DescriptorError(ValueError):
    """A descriptor that cannot be used; problems: (field, message) pairs."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]):
        self.path, self.problems = path, problems
        super().__init__("; ".join(f"{path}: {f}: {m}" if f else f"{path}: {m}" for f, m in problems))


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL

    def array(self) -> np.ndarray:
        if self.datatype == "BYTES":
            flat = np.array([d.encode() if isinstance(d, str) else bytes(d) for d in self.data], dtype=object)
            return flat.reshape(self.shape)
        from tritonclient.utils import triton_to_np_dtype

        return np.array(self.data, dtype=triton_to_np_dtype(self.datatype)).reshape(self.shape)


@dataclass(frozen=True)
class Sample:
    inputs: list[Tensor]
    outputs: list[Tensor]


@dataclass(frozen=True)
class Descriptor:
    path: Path
    model: str
    samples: list[Sample] = field(default_factory=list)
    reference: str | None = None
    health_check: bool = True
    slo: dict = field(default_factory=lambda: dict(DEFAULT_SLO))
    ensemble_step_of: str | None = None

    @property
    def checked(self) -> bool:
        """Whether smoke sends it anything: samples (with outputs or a reference) and not an ensemble step."""
        return self.ensemble_step_of is None and bool(self.samples)


def _field(error) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                   for i, p in enumerate(error.absolute_path)) or "(top level)"


def _tensors(mapping: dict) -> list[Tensor]:
    return [Tensor(name, t["datatype"], tuple(t["shape"]), list(t["data"]),
                   float(t.get("rtol", DEFAULT_RTOL)), float(t.get("atol", DEFAULT_ATOL)))
            for name, t in mapping.items()]


def parse(path: Path, document) -> Descriptor:
    """A Descriptor from a decoded JSON document; DescriptorError naming path and fields otherwise."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    problems = []
    for error in errors:
        if error.validator == "oneOf":
            problems.append((_field(error), "needs exactly one of `samples` or `ensemble_step_of`"))
        else:
            problems.append((_field(error), error.message))
    if problems:
        raise DescriptorError(path, problems)
    for i, sample in enumerate(document.get("samples", [])):
        for kind in ("inputs", "outputs"):
            for name, t in sample.get(kind, {}).items():
                count = int(np.prod(t["shape"])) if t["shape"] else 1
                if len(t["data"]) != count:
                    problems.append((f"samples[{i}].{kind}.{name}.data",
                                     f"{len(t['data'])} values for shape {t['shape']} ({count} expected)"))
                wrong = [d for d in t["data"] if isinstance(d, str) != (t["datatype"] == "BYTES")]
                if wrong:
                    problems.append((f"samples[{i}].{kind}.{name}.data",
                                     f"{wrong[0]!r} is not a {t['datatype']} value"))
        if not sample.get("outputs") and not document.get("reference"):
            problems.append((f"samples[{i}].outputs", "no expected outputs and no `reference` to judge the answer"))
    reference = document.get("reference")
    if reference is not None and reference not in REFERENCES:
        problems.append(("reference", f"unknown reference {reference!r} (known: {', '.join(sorted(REFERENCES))})"))
    if problems:
        raise DescriptorError(path, problems)
    return Descriptor(
        path=path, model=path.parent.name,
        samples=[Sample(_tensors(s["inputs"]), _tensors(s.get("outputs", {}))) for s in document.get("samples", [])],
        reference=reference, health_check=document.get("health_check", True),
        slo={**DEFAULT_SLO, **document.get("slo", {})}, ensemble_step_of=document.get("ensemble_step_of"))


def load(model_dir: Path) -> Descriptor:
    """The descriptor of the model in model_dir; FileNotFoundError when it has none."""
    path = Path(model_dir) / FILENAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise DescriptorError(path, [("", f"cannot read: {exc}")]) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DescriptorError(path, [(f"line {exc.lineno}, column {exc.colno}", exc.msg)]) from None
    return parse(path, document)


def values(array: np.ndarray) -> list:
    """A tensor's data as the file stores it: flat, row-major; floats in their shortest exact form for
    their own width (fp32 1.1, not 1.100000023841858), BYTES as UTF-8 text."""
    flat = np.asarray(array).ravel()
    if flat.dtype == object or flat.dtype.kind in "SU":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
    if flat.dtype.kind == "f":
        return [float(str(v)) for v in flat]
    if flat.dtype.kind == "b":
        return [bool(v) for v in flat]
    return [int(v) for v in flat]


def dump(document: dict) -> str:
    """JSON text of a descriptor document: indented, each tensor's data kept on one line."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    # json.dumps puts every list item on its own line; fold lists of scalars back onto one line
    import re

    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


# --- Named references: a check of the outputs computed in Python rather than stored in the file ---
# Each takes (descriptor, sample, outputs: name -> numpy array as answered) and returns None or what is wrong.


def _linear_reference(desc: Descriptor, sample: Sample, outputs: dict[str, np.ndarray]) -> str | None:
    from . import linear

    (x,) = [t.array() for t in sample.inputs if t.name == linear.INPUT]
    return linear.check_output(x, outputs.get(linear.OUTPUT))


def _embed_reference(desc: Descriptor, sample: Sample, outputs: dict[str, np.ndarray]) -> str | None:
    """The transformers reference from the tokenizer's and encoder's files beside the descriptor's model.
    A repository holding only configs, descriptors and manifests (the deploy's copy of what a host serves,
    fetched without its 90 MB of weights) borrows the shipped repository's files when their pinned
    manifests (SHA256SUMS) are the same; otherwise it says which differ."""
    from .. import settings
    from . import embedding

    (texts,) = [t.data for t in sample.inputs if t.name == embedding.INPUT]
    texts = list(texts)
    repository = desc.path.parent.parent
    if not embedding.has_files(repository):
        differ = embedding.manifests_differ(repository, settings.MODEL_REPOSITORY)
        if differ:
            return (f"{repository} has no weights for the embed reference and its manifests differ from "
                    f"{settings.MODEL_REPOSITORY}'s: {', '.join(differ)}")
        repository = settings.MODEL_REPOSITORY
    want = embedding.reference(texts, repository=repository)
    return embedding.check_output(texts, outputs.get(embedding.OUTPUT), want)


REFERENCES: dict[str, Callable[[Descriptor, Sample, dict[str, np.ndarray]], str | None]] = {
    "linear": _linear_reference,
    "embed": _embed_reference,
}


def compare(sample: Sample, outputs: dict[str, np.ndarray]) -> str | None:
    """None when outputs hold every expected output of sample within its tolerance, else what differs."""
    for want in sample.outputs:
        got = outputs.get(want.name)
        if got is None:
            return f"response has no output '{want.name}'"
        if tuple(got.shape) != want.shape:
            return f"output '{want.name}' has shape {list(got.shape)}, expected {list(want.shape)}"
        expected = want.array()
        if want.datatype == "BYTES":
            flat_got = [g if isinstance(g, bytes) else str(g).encode() for g in got.ravel()]
            for i, (g, w) in enumerate(zip(flat_got, expected.ravel())):
                if g != w:
                    return f"output '{want.name}' value {i}: got {g!r}, expected {w!r}"
            continue
        if got.dtype != expected.dtype:
            return f"output '{want.name}' has dtype {got.dtype}, expected {expected.dtype} ({want.datatype})"
        ok = np.isclose(got.astype(np.float64), expected.astype(np.float64), rtol=want.rtol, atol=want.atol)
        if not ok.all():
            i = int(np.argmin(ok.ravel()))
            return (f"output '{want.name}' value {i}: got {got.ravel()[i]!r}, expected {expected.ravel()[i]!r} "
                    f"(rtol {want.rtol}, atol {want.atol})")
    return None


def check(descriptor: Descriptor, sample: Sample, outputs: dict[str, np.ndarray]) -> str | None:
    """The expected outputs first, then the named reference, if any."""
    problem = compare(sample, outputs)
    if problem is None and descriptor.reference:
        problem = REFERENCES[descriptor.reference](descriptor, sample, outputs)
    return problem
