"""The `embed` ensemble (tokenizer -> encoder) on the session's real server: its answers are the
reference's (transformers in this process, each text alone, unpadded) on every protocol, alone and
batched; its edge inputs have defined answers; bad requests get a 400 and the server keeps serving."""
from __future__ import annotations

import json
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tritonops import settings
from tritonops.models import embedding
from tritonops.models.embedding import DIM, INPUT, MIN_COSINE, MODEL, OUTPUT, SENTENCES, VERSION

INFER = f"/v2/models/{MODEL}/versions/{VERSION}/infer"
PROTOCOLS = ["http-json", "http-binary", "grpc"]
# Accents, CJK, RTL and Indic scripts, emoji (ZWJ sequences, flags, skin tones), zero-width and control
# characters, a NUL, a private-use code point: all valid UTF-8, none special to the server.
UNICODE = (
    "日本語の文章を埋め込みます。",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "Ελληνικά: naïve café, façade",
    "e\u0301te\u0301, combining accents",
    "👩‍👩‍👧‍👦 🏳️‍🌈 🇩🇪 👍🏽",
    "🙂🙂🙂",
    "zero\u200bwidth\u200bspaces",
    "tabs\tand\nnewlines\r\n",
    "nul\x00inside",
    "\U0010ffff private use",
    "mixed English, 中文 and עברית",
)
_WORDS = ("model server batch token request answer river mountain music violin horse bread woman man "
          "carries eats plays quickly slowly under over between green small large ancient modern city "
          "forest ocean engineer writes reads the a of and with from into").split()


def long_text(chars: int = 10_000, seed: int = 0) -> str:
    """chars characters of varied, non-repeating sentences (a periodic text would blur truncation)."""
    rng, parts, size = random.Random(seed), [], 0
    while size < chars:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 15))).capitalize() + "."
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)[:chars]


LONG = long_text()
_REFERENCE: dict[str, np.ndarray] = {}


def ref(texts) -> np.ndarray:
    """embedding.reference, each distinct text computed once per session."""
    missing = [t for t in dict.fromkeys(texts) if t not in _REFERENCE]
    _REFERENCE.update(zip(missing, embedding.reference(missing)))
    return np.stack([_REFERENCE[t] for t in texts]) if texts else np.zeros((0, DIM), np.float32)


def infer(triton, x: np.ndarray, protocol: str, datatype: str = "BYTES") -> np.ndarray:
    """One request to embed with tensor x as `text` over one protocol; InferenceServerException on refusal."""
    if protocol == "grpc":
        inp = grpcclient.InferInput(INPUT, list(x.shape), datatype)
        inp.set_data_from_numpy(x)
        with grpcclient.InferenceServerClient(triton.grpc_url) as client:
            return client.infer(MODEL, [inp], model_version=VERSION,
                                outputs=[grpcclient.InferRequestedOutput(OUTPUT)]).as_numpy(OUTPUT)
    binary = protocol == "http-binary"
    inp = httpclient.InferInput(INPUT, list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=binary)
    with httpclient.InferenceServerClient(triton.http_url) as client:
        return client.infer(MODEL, [inp], model_version=VERSION,
                            outputs=[httpclient.InferRequestedOutput(OUTPUT, binary_data=binary)]).as_numpy(OUTPUT)


def embed(triton, texts, protocol: str = "http-binary") -> np.ndarray:
    return infer(triton, embedding.texts_array(texts), protocol)


def assert_matches_reference(texts, got: np.ndarray) -> None:
    assert embedding.check_output(list(texts), got, ref(list(texts))) is None, embedding.check_output(list(texts), got, ref(list(texts)))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def json_body(texts) -> dict:
    return {"inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [len(texts), 1], "data": list(texts)}]}


def from_json(body: dict) -> np.ndarray:
    (out,) = body["outputs"]
    assert out["name"] == OUTPUT and out["datatype"] == "FP32", out
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def assert_still_serving(http) -> None:
    """READY, and still right: the refusal before this left nothing behind."""
    assert http.request("GET", "/v2/health/ready")[0] == 200
    assert http.request("GET", f"/v2/models/{MODEL}/versions/{VERSION}/ready")[0] == 200
    texts = [SENTENCES[6], SENTENCES[0], ""]
    status, body = http.post_json(INFER, json_body(texts))
    assert status == 200, body
    assert_matches_reference(texts, from_json(body))


def assert_refused(exc: InferenceServerException, protocol: str, fragment: str) -> None:
    assert exc.status() == ("StatusCode.INVALID_ARGUMENT" if protocol == "grpc" else "400"), (exc.status(), str(exc))
    assert fragment in exc.message(), exc.message()


# --- the contract --------------------------------------------------------------------------------------

def test_metadata_and_config_are_the_contract(http):
    status, meta = http.get_json(f"/v2/models/{MODEL}/versions/{VERSION}")
    assert status == 200, meta
    assert meta["inputs"] == [{"name": INPUT, "datatype": "BYTES", "shape": [-1, 1]}]
    assert meta["outputs"] == [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, DIM]}]
    status, config = http.get_json(f"/v2/models/{MODEL}/config")
    assert status == 200 and config["max_batch_size"] == 64 and config["platform"] == "ensemble"
    assert embedding.max_tokens() == 256


def test_encoder_runs_the_intra_op_threads_its_config_names(triton, http):
    """config.pbtxt's intra_op_threads (1) reaches torch: torch's default here would be one per core."""
    status, config = http.get_json(f"/v2/models/{embedding.ENCODER}/config")
    assert status == 200 and config["parameters"]["intra_op_threads"]["string_value"] == "1", config.get("parameters")
    assert re.search(r"encoder: loaded \S+ on cpu, 1 intra-op thread\(s\)", triton.log_path.read_text())


def test_docs_curl_example_answers_what_the_docs_say(http):
    """docs/models.md's curl body (The embed model), sent as it is written there."""
    section = (settings.ROOT / "docs" / "models.md").read_text().split("## The embed model", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"curl -s localhost:8000(/v2/models/embed/versions/1/infer) .*?-d '([^']*)'", section, re.S)
    assert match, "docs/models.md: The embed model has no curl example"
    path, body = match.group(1), json.loads(match.group(2))
    status, answer = http.post_json(path, body)
    assert status == 200, answer
    texts = body["inputs"][0]["data"]
    got = from_json(answer)
    assert got.shape == (2, DIM)
    assert_matches_reference(texts, got)
    assert f"their dot product: {float(got[0] @ got[1]):.3f}" in section


# --- accuracy: the reference's answers, however the requests are cut and merged -------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_request_with_every_sentence_matches_the_reference(triton, protocol):
    """Texts of 3 to 20 tokens in one request: the short ones are padded to the longest, so masked
    attention and masked mean pooling are both needed to agree (test_check_catches_* below)."""
    texts = [*SENTENCES, LONG]
    assert_matches_reference(texts, embed(triton, texts, protocol))


def counts(triton, http, model: str) -> tuple[int, int]:
    """(execution_count, inference_count) of a model: its execute() calls, and the rows they ran."""
    status, raw = http.request("GET", f"/v2/models/{model}/versions/{VERSION}/stats", headers=triton.admin_headers())
    assert status == 200, raw
    (stats,) = json.loads(raw)["model_stats"]
    return int(stats["execution_count"]), int(stats["inference_count"])


def prefix(text: str, tokens: int) -> str:
    """The start of text that tokenizes to exactly `tokens` ids, [CLS] and [SEP] included."""
    tokenizer = embedding.load()[0]
    offsets = tokenizer(text, truncation=True, max_length=tokens, return_offsets_mapping=True)["offset_mapping"]
    cut = text[:offsets[-2][1]]
    assert len(tokenizer(cut)["input_ids"]) == tokens
    return cut


def ragged_requests() -> list[list[str]]:
    """A first request that keeps the encoder busy (four 256-token texts), then requests whose longest
    texts all differ in token count, each with shorter texts beside it."""
    requests = [[LONG] * 4]
    for i, tokens in enumerate((9, 14, 22, 35, 57, 91, 147, 200)):
        requests.append([SENTENCES[i % len(SENTENCES)], prefix(LONG[100 * i:], tokens), *([""] if i % 3 == 0 else [])])
    requests += [[SENTENCES[9], SENTENCES[6]], [UNICODE[0]], [UNICODE[5], SENTENCES[1], SENTENCES[2]]]
    tokenizer = embedding.load()[0]
    widths = [max(len(tokenizer(t)["input_ids"]) for t in texts) for texts in requests]
    assert len(set(widths)) == len(widths), f"fixture drift: two requests with the same longest text: {widths}"
    return requests


def send_until_ragged_merge(triton, http, requests, send, models_to_count, rounds: int = 10, require: bool = True):
    """Send all requests at once, round after round, until the counters prove a merge; every answer is
    checked against the reference on every round. Returns how many rounds it took. The requests go out
    20 ms apart: the tokenizer (a few ms a call) then mostly runs them one by one, while the encoder,
    busy for a second or more with the first, queues them: a tokenizer that merged them all, or an
    encoder that never did, just costs another round."""
    rows = sum(len(texts) for texts in requests)
    for attempt in range(1, rounds + 1):
        before = {m: counts(triton, http, m) for m in models_to_count}
        with ThreadPoolExecutor(len(requests)) as pool:
            futures = []
            for texts in requests:
                futures.append(pool.submit(send, texts))
                time.sleep(0.02)  # not a timing check: spreads arrivals over the first request's run
            answers = [future.result() for future in futures]
        after = {m: counts(triton, http, m) for m in models_to_count}
        for texts, got in zip(requests, answers):
            assert_matches_reference(texts, got)
        executions = {m: after[m][0] - before[m][0] for m in models_to_count}
        for m in models_to_count:  # only these requests reached the models meanwhile
            assert after[m][1] - before[m][1] == rows, (m, before[m], after[m], rows)
        if executions[embedding.ENCODER] < (executions[embedding.TOKENIZER] if embedding.TOKENIZER in executions else len(requests)):
            print(f"merge proven on round {attempt}: executions {executions} for {len(requests)} requests")
            return attempt
    if not require:
        return 0
    pytest.fail(f"{rounds} rounds of {len(requests)} concurrent requests, no merge proven (last: {executions})")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_concurrent_ragged_requests_match_the_reference(triton, http, protocol):
    """Requests of different sizes and lengths sent at once through embed: every row is the reference's,
    whichever way the batchers merged them. Rounds go on until Triton's counters show the encoder merged
    requests of different lengths, at most 5: every request's longest text has its own token count, so
    each tokenizer execute() pads to a width no other has, and fewer encoder executions than tokenizer
    executions means some encoder execution took two widths. (inference_count counts rows, not requests:
    `executions < inference_count` would hold for one 2-row request alone, proving nothing.) That a merge
    happens is asserted by test_encoder_alone_merges_ragged_requests_and_answers_the_reference, where
    nothing upstream can merge first: here, on a loaded box the tokenizer may merge the requests itself
    and leave the encoder one batch per call (seen once in about a dozen runs)."""
    send_until_ragged_merge(triton, http, ragged_requests(), lambda texts: embed(triton, texts, protocol),
                            [embedding.TOKENIZER, embedding.ENCODER], rounds=5, require=False)


def test_check_catches_unmasked_padding_and_unmasked_pooling():
    """The accuracy tests above would fail on the two classic pooling bugs: the same padded batch, run
    in this process the right way passes check_output, each broken way does not."""
    import torch

    tokenizer, model, limit = embedding.load()
    texts = list(SENTENCES)
    batch = tokenizer(texts, padding="longest", truncation=True, max_length=limit, return_tensors="pt")
    mask = batch["attention_mask"]
    assert (mask == 0).any(), "no padding in the batch: nothing to catch"

    def pooled(hidden, weights):
        w = weights.unsqueeze(-1).to(hidden.dtype)
        return torch.nn.functional.normalize((hidden * w).sum(1) / w.sum(1), dim=1).numpy()

    with torch.inference_mode():
        hidden = model(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
        attended = model(input_ids=batch["input_ids"], attention_mask=torch.ones_like(mask)).last_hidden_state
    want = ref(texts)
    assert embedding.check_output(texts, pooled(hidden, mask), want) is None
    assert embedding.check_output(texts, pooled(attended, mask), want) is not None  # padding attended
    assert embedding.check_output(texts, pooled(hidden, torch.ones_like(mask)), want) is not None  # mean over padding


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_paraphrase_is_closer_than_unrelated(triton, protocol):
    got = embed(triton, [*embedding.PARAPHRASE, *embedding.UNRELATED], protocol)
    paraphrase, unrelated = embedding.cosine(got[0:1], got[1:2])[0], embedding.cosine(got[2:3], got[3:4])[0]
    assert paraphrase > unrelated + 0.1, (paraphrase, unrelated)


# --- edge inputs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_string_answers_the_reference_unit_vector(triton, protocol):
    alone = embed(triton, [""], protocol)
    assert alone.shape == (1, DIM) and np.isfinite(alone).all()
    assert_matches_reference([""], alone)
    mixed = ["", SENTENCES[6], " ", ""]  # beside a long text: padded, all but [CLS] [SEP]
    assert_matches_reference(mixed, embed(triton, mixed, protocol))


def test_long_text_is_truncated_at_256_tokens_and_its_tail_changes_nothing(triton):
    tokenizer, _, limit = embedding.load()
    assert len(LONG) == 10_000 and limit == 256
    cut = embedding.truncated(LONG)
    full_ids = tokenizer(LONG, truncation=True, max_length=4 * limit)["input_ids"]
    assert len(full_ids) > 2 * limit  # untruncated, the encoder would refuse it (512 positions)
    assert tokenizer(cut)["input_ids"] == full_ids[:limit - 1] + [full_ids[-1]]  # exactly what fits
    assert len(cut) < len(LONG) // 2

    separate = np.concatenate([embed(triton, [LONG]), embed(triton, [cut])])
    together = embed(triton, [LONG, cut, SENTENCES[0]])
    assert_matches_reference([LONG, cut], separate)
    assert_matches_reference([LONG, cut, SENTENCES[0]], together)
    assert embedding.cosine(separate[0:1], separate[1:2])[0] >= 1 - 1e-6
    assert embedding.cosine(together[0:1], together[1:2])[0] >= 1 - 1e-6
    # The check is sharp enough to see where the cut is: 32 tokens more, or 32 fewer, would fail it.
    longer = embedding.reference([LONG], max_tokens=limit + 32)
    shorter = embedding.reference([LONG], max_tokens=limit - 32)
    assert embedding.cosine(separate[0:1], longer)[0] < MIN_COSINE
    assert embedding.cosine(separate[0:1], shorter)[0] < MIN_COSINE


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unicode_and_emoji_match_the_reference(triton, protocol):
    texts = [*UNICODE, SENTENCES[8]]
    assert_matches_reference(texts, embed(triton, texts, protocol))


def test_max_batch_size_rows_answered(triton):
    texts = [(SENTENCES + UNICODE)[i % (len(SENTENCES) + len(UNICODE))] for i in range(64)]
    assert_matches_reference(texts, embed(triton, texts))


# --- refusals: 400 (gRPC INVALID_ARGUMENT) with a message, and the server keeps serving ------------------

BAD_UTF8 = {"lone-continuation-byte": b"\x80 hello", "truncated-sequence": b"caf\xc3",
            "surrogate": b"\xed\xa0\x80", "latin-1": "naïve".encode("latin-1")}


@pytest.mark.parametrize("protocol", ["http-binary", "grpc"])  # JSON cannot carry non-UTF-8 bytes
@pytest.mark.parametrize("raw", BAD_UTF8.values(), ids=BAD_UTF8.keys())
def test_invalid_utf8_is_refused(triton, http, protocol, raw):
    with pytest.raises(InferenceServerException) as exc:
        embed(triton, [SENTENCES[0], raw, SENTENCES[1]], protocol)
    assert_refused(exc.value, protocol, "input 'text' must be UTF-8 text")
    assert_still_serving(http)


def test_an_invalid_text_fails_alone_among_concurrent_requests(triton, http):
    requests = [[LONG] * 2] + [[SENTENCES[i], SENTENCES[i + 1]] for i in range(6)]
    requests[3] = [SENTENCES[3], b"\xff\xfe"]
    with ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(embed, triton, texts) for texts in requests]
    for i, (texts, future) in enumerate(zip(requests, futures)):
        if i == 3:
            assert isinstance(future.exception(), InferenceServerException)
            assert_refused(future.exception(), "http-binary", "must be UTF-8 text")
        else:
            assert_matches_reference(texts, future.result())
    assert_still_serving(http)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_more_rows_than_max_batch_size_is_refused(triton, http, protocol):
    with pytest.raises(InferenceServerException) as exc:
        embed(triton, [SENTENCES[0]] * 65, protocol)
    assert_refused(exc.value, protocol, f"batch-size must be <= 64 for '{MODEL}'")
    assert_still_serving(http)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("datatype,x", [("FP32", np.ones((2, 1), np.float32)), ("INT32", np.ones((2, 1), np.int32))],
                         ids=["FP32", "INT32"])
def test_wrong_datatype_is_refused(triton, http, protocol, datatype, x):
    with pytest.raises(InferenceServerException) as exc:
        infer(triton, x, protocol, datatype)
    assert_refused(exc.value, protocol, f"data-type is '{datatype}', but model '{MODEL}' expects 'BYTES'")
    assert_still_serving(http)


def mutated(**changes) -> dict:
    body = json_body(SENTENCES[:2])
    body["inputs"][0].update(changes)
    return body


# (id, body, fragment of the message): raw JSON, as curl users send it
JSON_CASES = [
    ("wrong-shape", mutated(shape=[1, 2]), "unexpected shape for input 'text' for model 'embed'. Expected [-1,1], got [1,2]"),
    ("wrong-input-name", mutated(name="texts"), "unexpected inference input 'texts' for model 'embed'"),
    ("empty-batch", mutated(shape=[0, 1], data=[]), "expected 1 string elements for inference input 'text'"),
    ("too-many-rows", json_body([SENTENCES[0]] * 65), "batch-size must be <= 64 for 'embed'"),
    ("wrong-datatype", mutated(datatype="FP32", data=[1.0, 2.0]), "data-type is 'FP32', but model 'embed' expects 'BYTES'"),
]


@pytest.mark.parametrize("body,fragment", [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES])
def test_bad_json_request_is_refused(http, body, fragment):
    status, answer = http.post_json(INFER, body)
    assert status == 400 and fragment in answer["error"], (status, answer)
    assert_still_serving(http)


# --- the encoder called directly: bad token tensors are the client's fault (400), never a 500 ----------

ENCODER_INFER = f"/v2/models/{embedding.ENCODER}/versions/{VERSION}/infer"


def encoder_body(ids, mask, ids_shape=None, mask_shape=None, ids_type="INT64") -> dict:
    ids, mask = np.asarray(ids), np.asarray(mask)
    return {"inputs": [
        {"name": "input_ids", "datatype": ids_type, "shape": list(ids_shape or ids.shape), "data": ids.ravel().tolist()},
        {"name": "attention_mask", "datatype": "INT64", "shape": list(mask_shape or mask.shape), "data": mask.ravel().tolist()},
    ]}


def encoder_limits() -> tuple[int, int]:
    config = embedding.load()[1].config
    return config.vocab_size, config.max_position_embeddings


def encoder_cases():
    vocab, positions = encoder_limits()
    ids, ones = [[101, 2000, 102]], [[1, 1, 1]]
    return [
        ("id-equal-to-vocab-size", encoder_body([[101, vocab, 102]], ones), f"'input_ids' must hold token ids in [0, {vocab})"),
        ("id-far-out-of-range", encoder_body([[101, 2**40, 102]], ones), f"'input_ids' must hold token ids in [0, {vocab})"),
        ("negative-id", encoder_body([[101, -1, 102]], ones), f"'input_ids' must hold token ids in [0, {vocab})"),
        ("shapes-differ", encoder_body(ids, [[1, 1]]), "must have one shape [batch>=1, 1..512], got [1, 3] and [1, 2]"),
        ("more-than-positions", encoder_body([[101] * (positions + 1)], [[1] * (positions + 1)]),
         f"must have one shape [batch>=1, 1..{positions}], got [1, {positions + 1}]"),
        ("zero-width", encoder_body(np.zeros((1, 0), np.int64), np.zeros((1, 0), np.int64)), "got [1, 0] and [1, 0]"),
        ("mask-not-0-1", encoder_body(ids, [[1, 2, 1]]), "'attention_mask' must be 0/1 with at least one 1 per row"),
        ("mask-row-all-zero", encoder_body(ids * 2, [[1, 1, 1], [0, 0, 0]]), "'attention_mask' must be 0/1 with at least one 1 per row"),
        ("batch-sizes-differ", encoder_body(ids * 2, ones), "input 'input_ids' batch size does not match other inputs for 'encoder'"),
        ("wrong-datatype", encoder_body(ids, ones, ids_type="INT32"), "data-type is 'INT32', but model 'encoder' expects 'INT64'"),
        ("missing-mask", {"inputs": encoder_body(ids, ones)["inputs"][:1]}, "missing required input(s) ['attention_mask']"),
    ]


ENCODER_CASE_IDS = ["id-equal-to-vocab-size", "id-far-out-of-range", "negative-id", "shapes-differ", "more-than-positions",
                    "zero-width", "mask-not-0-1", "mask-row-all-zero", "batch-sizes-differ", "wrong-datatype", "missing-mask"]


def test_every_encoder_case_is_run():
    assert [c[0] for c in encoder_cases()] == ENCODER_CASE_IDS


@pytest.mark.parametrize("case", ENCODER_CASE_IDS)
def test_bad_encoder_input_is_refused_with_400(http, case):
    body, fragment = {c[0]: c[1:] for c in encoder_cases()}[case]
    status, answer = http.post_json(ENCODER_INFER, body)
    assert status == 400 and fragment in answer["error"], (status, answer)
    assert http.request("GET", f"/v2/models/{embedding.ENCODER}/versions/{VERSION}/ready")[0] == 200
    assert_still_serving(http)


def test_encoder_alone_merges_ragged_requests_and_answers_the_reference(triton, http):
    """Token ids from the reference's tokenizer sent straight to the encoder, each request padded to its
    own width: fewer executions than requests proves requests of different widths ran as one batch
    (model.py pads them to the longest; the mask keeps the padding out), and each row is the reference's."""
    tokenizer, _, limit = embedding.load()
    requests = ragged_requests()
    bodies = {}
    for texts in requests:
        batch = tokenizer(texts, padding="longest", truncation=True, max_length=limit, return_tensors="np")
        bodies[tuple(texts)] = encoder_body(batch["input_ids"], batch["attention_mask"])

    def send(texts):
        # Not a latency bound: the first request's 4 x 256 tokens and every request queued behind it
        # run on a CPU other suites share (10 s, the default, was too short at load 12).
        status, answer = http.post_json(ENCODER_INFER, bodies[tuple(texts)], timeout=120)
        assert status == 200, answer
        return from_json(answer)

    send_until_ragged_merge(triton, http, requests, send, [embedding.ENCODER])


def test_a_bad_encoder_request_fails_alone(triton, http):
    """Sent with good requests at once: that one gets its 400, the others their rows."""
    tokenizer = embedding.load()[0]
    vocab, _ = encoder_limits()
    pairs = [list(SENTENCES[i:i + 2]) for i in range(0, 8, 2)]
    bodies = []
    for texts in pairs:
        batch = tokenizer(texts, padding="longest", return_tensors="np")
        bodies.append(encoder_body(batch["input_ids"], batch["attention_mask"]))
    bad = encoder_body([[101, vocab + 7, 102]], [[1, 1, 1]])
    with ThreadPoolExecutor(len(bodies) + 1) as pool:
        answers = list(pool.map(lambda body: http.post_json(ENCODER_INFER, body), [*bodies[:2], bad, *bodies[2:]]))
    status, answer = answers.pop(2)
    assert status == 400 and "must hold token ids" in answer["error"], answer
    for texts, (status, answer) in zip(pairs, answers):
        assert status == 200, answer
        assert_matches_reference(texts, from_json(answer))
    assert_still_serving(http)


def _weightless_copy(dest, manifest_edit=None):
    """model_repository as the deploy's check fetches it from a host: configs, descriptors, manifests."""
    import shutil

    for src in settings.MODEL_REPOSITORY.rglob("*"):
        if src.name in ("config.pbtxt", "tritonops.json", "SHA256SUMS") and "minilm" not in src.parts:
            target = dest / src.relative_to(settings.MODEL_REPOSITORY)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target)
    if manifest_edit:
        path = dest / embedding.ENCODER / VERSION / "SHA256SUMS"
        path.write_text(manifest_edit(path.read_text()))
    return dest


def test_a_weightless_copy_borrows_the_shipped_files_only_when_the_manifests_match(tmp_path):
    """The deploy's smoke reads a host's release from a copy without MiniLM's weights: the embed
    reference then uses the shipped repository's files, pinned by the same SHA256SUMS, and refuses
    (naming the step) when the release pins other files."""
    from tritonops.models import descriptor

    texts = list(SENTENCES[:2])
    answer = {OUTPUT: embedding.reference(texts)}
    for name, edit, verdict in (("same", None, None), ("other", lambda s: s.replace(s[:8], "00000000", 1), "encoder")):
        copy = _weightless_copy(tmp_path / name, edit)
        assert not embedding.has_files(copy)
        desc = descriptor.load(copy / MODEL)
        sample = descriptor.Sample(inputs=[descriptor.Tensor(INPUT, "BYTES", (len(texts), 1), texts)], outputs=[])
        problem = descriptor.check(desc, sample, answer)
        if verdict is None:
            assert problem is None, problem
        else:
            assert problem and "manifests differ" in problem and verdict in problem, problem
