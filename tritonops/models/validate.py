"""Validate a Triton model repository before a server sees it.

Every config.pbtxt is parsed with protobuf text_format into Triton's own ModelConfig message
(tritonclient's model_config_pb2), then checked for what Triton would reject at load time. All
problems are reported at once, each naming the file and the field. Files git does not carry (a
version directory's SHA256SUMS lists them: `make models` puts them there) must be present and hash
to what the manifest says. Ensembles are checked against the models of the same repository. Every
model has a descriptor (tritonops.json, tritonops/models/descriptor.py) whose samples match its config.pbtxt,
or is marked as a step reached only through an ensemble of the repository.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from . import descriptor as descriptors
from . import fetch as model_files

# File Triton loads from a version directory when default_model_filename is not set.
DEFAULT_MODEL_FILE = {
    "python": "model.py",
    "onnxruntime": "model.onnx",
    "pytorch": "model.pt",
    "tensorrt": "model.plan",
    "openvino": "model.xml",
}
PLATFORM_BACKEND = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "tensorrt_plan": "tensorrt",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
    "ensemble": "ensemble",
}
WEIGHT_SUFFIXES = {".bin", ".pt", ".pth"}
THREADS_PARAM = "intra_op_threads"  # a Python model's torch intra-op threads


@dataclass(frozen=True)
class Problem:
    path: Path
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}" if self.field else f"{self.path}: {self.message}"


def load_config(path: Path) -> tuple[mc.ModelConfig | None, list[Problem]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(path, "", f"cannot read: {exc}")]
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        where = f"line {exc.GetLine()}, column {exc.GetColumn()}" if exc.GetLine() else "syntax"
        return None, [Problem(path, where, str(exc).split(" : ", 1)[-1])]
    return config, []


def _check_tensors(cfg_path: Path, kind: str, tensors) -> list[Problem]:
    problems, seen = [], set()
    for i, t in enumerate(tensors):
        field = f"{kind}[{i}]" + (f" ({t.name})" if t.name else "")
        if not t.name:
            problems.append(Problem(cfg_path, f"{field}.name", "must not be empty"))
        elif t.name in seen:
            problems.append(Problem(cfg_path, f"{field}.name", f"duplicate {kind} name '{t.name}'"))
        seen.add(t.name)
        if t.data_type == mc.TYPE_INVALID:
            problems.append(Problem(cfg_path, f"{field}.data_type", "missing or TYPE_INVALID"))
        if not t.dims and not t.HasField("reshape"):
            problems.append(Problem(cfg_path, f"{field}.dims", "must list at least one dimension"))
        for d in t.dims:
            if d == 0 or d < -1:
                problems.append(Problem(cfg_path, f"{field}.dims", f"dimension {d} is invalid (use > 0, or -1 for variable)"))
    return problems


def _check_batching(cfg_path: Path, config: mc.ModelConfig) -> list[Problem]:
    problems = []
    mbs = config.max_batch_size
    if mbs < 0:
        problems.append(Problem(cfg_path, "max_batch_size", f"{mbs} is negative"))
    if config.HasField("dynamic_batching"):
        if mbs == 0:
            problems.append(Problem(cfg_path, "dynamic_batching", "requires max_batch_size > 0"))
        for size in config.dynamic_batching.preferred_batch_size:
            if size <= 0:
                problems.append(Problem(cfg_path, "dynamic_batching.preferred_batch_size", f"{size} must be > 0"))
            elif mbs > 0 and size > mbs:
                problems.append(Problem(cfg_path, "dynamic_batching.preferred_batch_size",
                                        f"{size} is larger than max_batch_size {mbs}"))
    for i, group in enumerate(config.instance_group):
        if group.count < 0:
            problems.append(Problem(cfg_path, f"instance_group[{i}].count", f"{group.count} is negative"))
        if group.kind == mc.ModelInstanceGroup.KIND_CPU and group.gpus:
            problems.append(Problem(cfg_path, f"instance_group[{i}].gpus", "KIND_CPU instances cannot name GPUs"))
    return problems


def _check_weights(path: Path) -> Problem | None:
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means Triton's model would fail too
        return Problem(path, "", f"not loadable with torch.load(weights_only=True): {type(exc).__name__}: {exc}".split("\n")[0])
    return None


def _check_manifest(manifest: Path) -> list[Problem]:
    """Each file the manifest lists exists and hashes to its line; a bad line is named by number."""
    try:
        entries, errors = model_files.parse_manifest(manifest)
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(manifest, "", f"cannot read: {exc}")]
    problems = [Problem(manifest, f"line {e.lineno}", e.reason) for e in errors]
    for entry in entries:
        why = model_files.reason(entry)
        if why:
            problems.append(Problem(entry.path, "", why))
    return problems


def _check_version_dirs(model_dir: Path, cfg_path: Path, config: mc.ModelConfig) -> list[Problem]:
    problems = []
    versions = sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        return [Problem(model_dir, "", "no numeric version directory (e.g. 1/)")]
    backend = config.backend or PLATFORM_BACKEND.get(config.platform, "")
    model_file = config.default_model_filename or DEFAULT_MODEL_FILE.get(backend)
    weights_param = config.parameters["weights"].string_value if "weights" in config.parameters else ""
    for vdir in versions:
        if model_file and not (vdir / model_file).exists():
            field = "default_model_filename" if config.default_model_filename else "backend"
            problems.append(Problem(vdir, field, f"{backend} backend needs {vdir / model_file}, which is missing"))
        if weights_param:
            wpath = vdir / weights_param
            if not wpath.is_file():
                problems.append(Problem(cfg_path, "parameters[weights]", f"weights file {wpath} is missing"))
        manifest = vdir / model_files.MANIFEST
        if manifest.is_file():
            problems += _check_manifest(manifest)
        if backend == "python":  # state_dicts a model.py may load: all must be safe to load
            for f in sorted(vdir.rglob("*")):
                if f.suffix in WEIGHT_SUFFIXES and f.is_file():
                    problem = _check_weights(f)
                    if problem:
                        problems.append(problem)
    return problems


def validate_model(model_dir: Path) -> list[Problem]:
    cfg_path = model_dir / "config.pbtxt"
    if not cfg_path.is_file():
        return [Problem(model_dir, "", "missing config.pbtxt")]
    config, problems = load_config(cfg_path)
    if config is None:
        return problems
    if config.name and config.name != model_dir.name:
        problems.append(Problem(cfg_path, "name", f"'{config.name}' does not match the directory name '{model_dir.name}'"))
    if not config.backend and not config.platform:
        problems.append(Problem(cfg_path, "backend", "neither backend nor platform is set"))
    if config.platform != "ensemble":
        if not config.input:
            problems.append(Problem(cfg_path, "input", "no inputs declared"))
        if not config.output:
            problems.append(Problem(cfg_path, "output", "no outputs declared"))
    problems += _check_tensors(cfg_path, "input", config.input)
    problems += _check_tensors(cfg_path, "output", config.output)
    problems += _check_batching(cfg_path, config)
    problems += _check_version_dirs(model_dir, cfg_path, config)
    if THREADS_PARAM in config.parameters:  # read by the encoder's model.py (torch.set_num_threads)
        threads = config.parameters[THREADS_PARAM].string_value
        if not threads.isdigit() or int(threads) < 1:
            problems.append(Problem(cfg_path, f"parameters[{THREADS_PARAM}]", f"{threads!r} is not an integer >= 1"))
    return problems


def _is_ensemble(config: mc.ModelConfig) -> bool:
    return config.platform == "ensemble" or config.backend == "ensemble"


def _check_ensemble(cfg_path: Path, config: mc.ModelConfig, configs: dict[str, mc.ModelConfig | None]) -> list[Problem]:
    """What Triton 2.51 refuses when it loads an ensemble (each seen refused there): a step naming a
    model the repository lacks; an input_map key that is not an input of the step's model, an output_map
    key that is not one of its outputs, a required input left unmapped; a step input that no ensemble
    input or step output provides, or that waits on a cycle; an ensemble output no step writes; a step
    output nothing reads; the two ends of a tensor declaring different data types. Steps may be listed
    in any order (Triton follows the data, not the list)."""
    problems = []
    if not config.HasField("ensemble_scheduling") or not config.ensemble_scheduling.step:
        return [Problem(cfg_path, "ensemble_scheduling.step", "an ensemble needs at least one step")]
    # tensor -> (data type, where it is declared) of whoever writes it, and of each reader
    writers: dict[str, tuple[int, str]] = {t.name: (t.data_type, f"input ({t.name})") for t in config.input}
    readers: dict[str, list[tuple[int, str]]] = {}
    for t in config.output:
        readers.setdefault(t.name, []).append((t.data_type, f"output ({t.name})"))
    step_inputs: list[set[str]] = []
    for i, step in enumerate(config.ensemble_scheduling.step):
        field = f"ensemble_scheduling.step[{i}]"
        step_inputs.append(set(step.input_map.values()))
        if step.model_name not in configs:
            problems.append(Problem(cfg_path, f"{field}.model_name", f"'{step.model_name}' is not a model in {cfg_path.parent.parent}"))
            model = None
        else:
            model = configs[step.model_name]  # None: its own config.pbtxt is broken, reported there
        inputs = {t.name: t for t in model.input} if model else {}
        outputs = {t.name: t for t in model.output} if model else {}
        for key, tensor in sorted(step.input_map.items()):
            if model and key not in inputs:
                problems.append(Problem(cfg_path, f"{field}.input_map[{key}]",
                                        f"'{key}' is not an input of model '{step.model_name}' (its inputs: {', '.join(inputs) or 'none'})"))
            readers.setdefault(tensor, []).append((inputs[key].data_type if key in inputs else None, f"{field}.input_map[{key}]"))
        for name, t in inputs.items():
            if name not in step.input_map and not t.optional:
                problems.append(Problem(cfg_path, f"{field}.input_map",
                                        f"input '{name}' of model '{step.model_name}' is not mapped to any ensemble tensor"))
        for key, tensor in sorted(step.output_map.items()):
            if model and key not in outputs:
                problems.append(Problem(cfg_path, f"{field}.output_map[{key}]",
                                        f"'{key}' is not an output of model '{step.model_name}' (its outputs: {', '.join(outputs) or 'none'})"))
            if tensor in writers:
                problems.append(Problem(cfg_path, f"{field}.output_map[{key}]",
                                        f"ensemble tensor '{tensor}' is already written by {writers[tensor][1]}"))
            else:
                writers[tensor] = (outputs[key].data_type if key in outputs else None, f"{field}.output_map[{key}]")
    # Which steps can ever run: those whose every input is written, starting from the ensemble's inputs.
    available, ran, progress = {t.name for t in config.input}, set(), True
    while progress:
        progress = False
        for i, step in enumerate(config.ensemble_scheduling.step):
            if i not in ran and step_inputs[i] <= available:
                ran.add(i)
                available |= set(step.output_map.values())
                progress = True
    for i, step in enumerate(config.ensemble_scheduling.step):
        for key, tensor in sorted(step.input_map.items()):
            field = f"ensemble_scheduling.step[{i}].input_map[{key}]"
            if tensor not in writers:
                problems.append(Problem(cfg_path, field, f"ensemble tensor '{tensor}' is neither an ensemble input nor any step's output"))
            elif i not in ran and tensor not in available:
                problems.append(Problem(cfg_path, field, f"ensemble tensor '{tensor}' is written by {writers[tensor][1]}, "
                                                         "a step that can never run (a cycle, or an input nothing writes)"))
    for j, t in enumerate(config.output):
        if t.name not in writers:
            problems.append(Problem(cfg_path, f"output[{j}] ({t.name})", "no step writes this ensemble output (output_map)"))
    for tensor, (dtype, where) in writers.items():
        if tensor not in readers and where.startswith("ensemble_scheduling"):
            problems.append(Problem(cfg_path, where, f"ensemble tensor '{tensor}' is written but nothing reads it"))
        for read_dtype, read_where in readers.get(tensor, []):
            if dtype is not None and read_dtype is not None and dtype != read_dtype:
                problems.append(Problem(cfg_path, read_where, f"ensemble tensor '{tensor}' is {mc.DataType.Name(read_dtype)} here "
                                                              f"but {mc.DataType.Name(dtype)} where written ({where})"))
    return problems


def validate_ensemble(model_dir: Path, repository: Path | None = None) -> list[Problem]:
    """The ensemble checks of one model directory against the models beside it (repository: its parent)."""
    model_dir = Path(model_dir)
    repository = Path(repository) if repository else model_dir.parent
    config, _ = load_config(model_dir / "config.pbtxt")  # its own problems: validate_model
    if config is None or not _is_ensemble(config):
        return []
    configs = {m.name: load_config(m / "config.pbtxt")[0] for m in _model_dirs(repository)}
    return _check_ensemble(model_dir / "config.pbtxt", config, configs)


def _model_dirs(repo: Path) -> list[Path]:
    return sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))


def validate_repository(repo: Path, descriptors: bool = True) -> list[Problem]:
    """Every problem of the repository; descriptors=False leaves out the tritonops.json checks (what
    Triton itself needs: a server may serve a model before `tritonops contract` describes it)."""
    repo = Path(repo)
    if not repo.is_dir():
        return [Problem(repo, "", "model repository directory does not exist")]
    models = _model_dirs(repo)
    if not models:
        return [Problem(repo, "", "no model directories")]
    own = {model.name: validate_model(model) for model in models}
    problems = [problem for model in models for problem in own[model.name]]
    configs = {m.name: load_config(m / "config.pbtxt")[0] if (m / "config.pbtxt").is_file() else None for m in models}
    for model in models:
        config = configs[model.name]
        if config is not None and _is_ensemble(config):
            found = _check_ensemble(model / "config.pbtxt", config, configs)
            own[model.name] += found
            problems += found
    if not descriptors:
        return problems
    broken = {name for name, found in own.items() if found or configs[name] is None}
    for model in models:  # the descriptors last: the config's own problems come first
        if configs[model.name] is not None:
            problems += _check_descriptor(model, configs[model.name], configs, bool(own[model.name]), broken)
    return problems


def datatype_name(data_type: int) -> str:
    """A config's data type as the protocol spells it: TYPE_FP32 -> FP32, TYPE_STRING -> BYTES."""
    name = mc.DataType.Name(data_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def _check_tensor_shape(where: str, shape: tuple[int, ...], dims, max_batch_size: int) -> str | None:
    want = ([f"1..{max_batch_size}"] if max_batch_size > 0 else []) + [str(d) if d != -1 else "any" for d in dims]
    body = shape[1:] if max_batch_size > 0 else shape
    if max_batch_size > 0 and (not shape or not 1 <= shape[0] <= max_batch_size):
        return f"{where}: shape {list(shape)} needs a batch dimension of 1..{max_batch_size} first (config: [{', '.join(want)}])"
    if len(body) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, body)):
        return f"{where}: shape {list(shape)} does not match the config's [{', '.join(want)}]"
    return None


def _check_samples(desc: descriptors.Descriptor, config: mc.ModelConfig) -> list[Problem]:
    """Each sample's tensors against config.pbtxt: names, datatypes, dims and the batch dimension."""
    problems = []
    declared = {"inputs": {t.name: t for t in config.input}, "outputs": {t.name: t for t in config.output}}
    for i, sample in enumerate(desc.samples):
        for kind, tensors in (("inputs", sample.inputs), ("outputs", sample.outputs)):
            for t in tensors:
                field = f"samples[{i}].{kind}.{t.name}"
                if t.name not in declared[kind]:
                    problems.append(Problem(desc.path, field, f"'{t.name}' is not an {kind[:-1]} of {config.name or desc.model} "
                                                              f"(config.pbtxt: {', '.join(declared[kind]) or 'none'})"))
                    continue
                cfg = declared[kind][t.name]
                if t.datatype != datatype_name(cfg.data_type):
                    problems.append(Problem(desc.path, f"{field}.datatype",
                                            f"{t.datatype}, but config.pbtxt declares {mc.DataType.Name(cfg.data_type)} "
                                            f"({datatype_name(cfg.data_type)})"))
                wrong = _check_tensor_shape(f"{field}.shape", t.shape, list(cfg.dims), config.max_batch_size)
                if wrong:
                    problems.append(Problem(desc.path, f"{field}.shape", wrong.split(": ", 1)[1]))
        given = {t.name for t in sample.inputs}
        for name, t in declared["inputs"].items():
            if name not in given and not t.optional:
                problems.append(Problem(desc.path, f"samples[{i}].inputs", f"required input '{name}' is missing"))
    return problems


def _check_descriptor(model: Path, config: mc.ModelConfig, configs: dict, own_problems: bool,
                      broken: set[str]) -> list[Problem]:
    """broken: models whose config.pbtxt has problems of its own (reported there, not again here)."""
    path = model / descriptors.FILENAME
    try:
        desc = descriptors.load(model)
    except FileNotFoundError:
        return [Problem(path, "", f"missing: every model needs a descriptor (`make contract MODEL={model.name}` writes one "
                                  "from a running server; a step reached only through an ensemble: "
                                  '{"ensemble_step_of": "<ensemble>"})')]
    except descriptors.DescriptorError as exc:
        return [Problem(exc.path, f, m) for f, m in exc.problems]
    if desc.ensemble_step_of is not None:
        parent = configs.get(desc.ensemble_step_of)
        if desc.ensemble_step_of not in configs:
            return [Problem(path, "ensemble_step_of", f"'{desc.ensemble_step_of}' is not a model in {model.parent}")]
        if parent is not None and desc.ensemble_step_of not in broken and (not _is_ensemble(parent) or
                                   model.name not in {s.model_name for s in parent.ensemble_scheduling.step}):
            return [Problem(path, "ensemble_step_of", f"'{desc.ensemble_step_of}' is not an ensemble with a step '{model.name}'")]
        return []
    return [] if own_problems else _check_samples(desc, config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops validate", description=__doc__)
    parser.add_argument("repository", nargs="?", type=Path, default=None, help="model repository (default: the repo's)")
    args = parser.parse_args(argv)
    from .. import settings

    repo = args.repository or settings.MODEL_REPOSITORY
    problems = validate_repository(repo)
    if problems:
        print(f"{repo}: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"{repo}: valid ({', '.join(p.name for p in sorted(repo.iterdir()) if p.is_dir())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
