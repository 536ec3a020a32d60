"""Pre- and post-processing: the seeded JPEGs and texts, ImageNet pre-processing, the locally
trained tokenizer, top-k labels, BYTES tensors on the wire, the spec's checks, the project's
server decoding and labelling for real (a subprocess), and whole runs with the processing
on the client and on the server whose times reach PostgreSQL and the report."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import point_and_requests, run_stages_for
from PIL import Image

from inferbench.errors import InferBenchError
from inferbench.load import v2protocol
from inferbench.load.protocols import get_protocol
from inferbench.load.protocols.base import Target
from inferbench.models.signature import TensorSpec
from inferbench.netutil import free_port, poll_http_ok
from inferbench.processing import images, labels, pipeline_label, text
from inferbench.processing.client import PipelinePayloads, pipeline_payloads
from inferbench.processing.serving import ServerPipeline
from inferbench.spec import parse_spec

QUICK = json.loads((Path(__file__).parents[1] / "examples" / "quick-onnxruntime.json")
                   .read_text())
CNN = {"family": "cnn", "depth": 1, "width": 8, "input_shape": [3, 32, 32]}


def test_jpegs_are_seeded_photographs_of_the_stated_size():
    first, again = images.make_jpegs(2, 320, 240, 85, 7), images.make_jpegs(2, 320, 240, 85, 7)
    assert first == again and first[0] != first[1]
    assert Image.open(io.BytesIO(first[0])).size == (320, 240)
    assert 3_000 < len(first[0]) < 60_000  # compresses like a photograph, not like noise


def test_imagenet_preprocessing_of_a_known_image():
    grey = io.BytesIO()
    Image.new("RGB", (300, 200), (128, 128, 128)).save(grey, format="PNG")
    tensor = images.preprocess_image(grey.getvalue(), 224, 224)
    assert tensor.shape == (3, 224, 224) and tensor.dtype == np.float32
    expected = (128 / 255 - images.IMAGENET_MEAN) / images.IMAGENET_STD
    np.testing.assert_allclose(tensor[:, 100, 100], expected, rtol=1e-5)


def test_texts_are_seeded_and_the_trained_tokenizer_cuts_them_to_the_sequence(tmp_path):
    texts = text.make_texts(3, 5, 40, seed=1)
    assert texts == text.make_texts(3, 5, 40, seed=1)
    text.train_tokenizer(tmp_path / "a.json", 500, seed=0)
    tokens = text.preprocess_texts(texts, text.load_tokenizer(tmp_path / "a.json", 16))
    assert tokens["input_ids"].shape == tokens["attention_mask"].shape == (3, 16)
    assert (tokens["input_ids"][:, 0] == text.SPECIAL.index("[CLS]")).all()
    assert (tokens["input_ids"] < 500).all()
    # padding is id 0 with mask 0, after the text's own tokens
    short = text.preprocess_texts(["pa."], text.load_tokenizer(tmp_path / "a.json", 16))
    n = int(short["attention_mask"][0].sum())
    assert 3 <= n < 16 and (short["input_ids"][0, n:] == 0).all()


def test_top_k_labels_and_their_probabilities():
    names, scores = labels.top_k(np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]]), 2,
                                 labels.class_labels(3))
    assert names.tolist() == [[b"class_0001", b"class_0002"], [b"class_0002", b"class_0000"]]
    e = np.exp([1.0, 3.0, 2.0])
    np.testing.assert_allclose(scores[0], [e[1] / e.sum(), e[2] / e.sum()], rtol=1e-6)
    assert labels.top_k(np.zeros((1, 2)), 5, labels.class_labels(2))[0].shape == (1, 2)


def test_bytes_tensors_cross_the_v2_wire_both_ways():
    jpegs = np.empty(2, dtype=object)
    jpegs[:] = [b"\xff\xd8abc", b""]
    body, headers = v2protocol.encode_request({"image": jpegs}, "labels")
    decoded, _ = v2protocol.decode_request(body, headers[v2protocol.HEADER_LENGTH])
    assert decoded["image"].tolist() == [b"\xff\xd8abc", b""]
    answer = {"labels": np.array([[b"a", b"bc"]], dtype=object),
              "scores": np.ones((1, 2), np.float32)}
    for binary in (True, False):
        body, headers = v2protocol.encode_response("m", answer, binary)
        out = v2protocol.decode_response(body, headers.get(v2protocol.HEADER_LENGTH))
        assert out["labels"].tolist() == [[b"a", b"bc"]]


@pytest.mark.parametrize("pipeline, changes, says", [
    ({"preprocess": "server"}, {"model": QUICK["model"]}, "model 'fc' takes neither images"),
    ({"postprocess": "server"}, {"platforms": ["triton"]},
     "platforms ['triton'] do not (['onnxruntime', 'torchscript', 'openvino'] do)"),
    ({"preprocess": "client"}, {"model": {"architecture": "bert_base", "input_shape": [16]},
                                "workload": {"arrival": "poisson", "rate_rps": 1,
                                             "sequence_length": {"distribution": "fixed",
                                                                 "length": 8}}},
     "remove workload.sequence_length"),
    ({"preprocess": "cloud"}, {}, "pipeline.preprocess"),
    ({"text": {"words_min": 9, "words_max": 3}}, {}, "words_min 9 is above words_max 3"),
])
def test_a_pipeline_the_run_cannot_do_is_refused_naming_the_fix(pipeline, changes, says):
    with pytest.raises(InferBenchError) as caught:
        parse_spec({**QUICK, "model": CNN, **changes, "pipeline": pipeline})
    assert says in str(caught.value)


def test_what_a_pipeline_sends_and_labels():
    spec = parse_spec({**QUICK, "model": CNN, "pipeline": {"preprocess": "client"}})
    assert spec.pipeline_input == "image"
    bert = parse_spec({**QUICK, "model": {"architecture": "bert_base", "input_shape": [16]},
                       "pipeline": {"preprocess": "server"}})
    assert bert.pipeline_input == "text"
    assert pipeline_label({"preprocess": "client", "postprocess": "server"}) == \
        "pre=client,post=server"
    assert pipeline_label({"preprocess": "none", "postprocess": "none"}) is None


def test_client_payloads_carry_tensors_and_each_requests_measured_time():
    inputs = (TensorSpec("input", "float32", (3, 32, 32)),)
    raw = pipeline_payloads("image", False, inputs, 2, 3, 5, image_size=(64, 48, 80),
                            words=(1, 2), tokenizer=None)
    assert [b["image"].shape for b in raw.batches] == [(2,)] * 3
    assert raw.preprocess_ms is None and raw.per_request(np.array([0, 2])) == {}
    client = pipeline_payloads("image", True, inputs, 2, 3, 5, image_size=(64, 48, 80),
                               words=(1, 2), tokenizer=None)
    assert [b["input"].shape for b in client.batches] == [(2, 3, 32, 32)] * 3
    np.testing.assert_array_equal(  # the same JPEGs, made into tensors here
        client.batches[1]["input"], images.preprocess_images(raw.batches[1]["image"], 32, 32))
    assert (client.preprocess_ms > 0).all()
    per = client.per_request(np.array([2, 0, 2]))
    assert per["client_preprocess_ms"].tolist() == client.preprocess_ms[[2, 0, 2]].tolist()
    post = PipelinePayloads([], postprocess_ms=np.array([0.5, 0.7]))
    assert post.per_request(np.array([1]))["client_postprocess_ms"].tolist() == [0.7]


def test_the_server_pipeline_refuses_what_it_cannot_parse():
    with pytest.raises(ValueError, match="expected image:H,W or text"):
        ServerPipeline.from_args("audio:16000", None, ["input"])
    with pytest.raises(ValueError, match="expected topk:K"):
        ServerPipeline.from_args(None, "labels", ["input"])


# --- the project's server, a real process, tokenising text and answering labels ---

def _text_classifier(path: Path, vocab: int, classes: int) -> None:
    """A tiny ONNX text classifier: embedding, masked mean, linear."""
    import torch

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, 8)
            self.head = torch.nn.Linear(8, classes)

        def forward(self, input_ids, attention_mask):
            mask = attention_mask.unsqueeze(-1).float()
            return self.head((self.embed(input_ids) * mask).sum(1) / mask.sum(1))

    torch.manual_seed(0)
    ids = torch.zeros((1, 16), dtype=torch.int64)
    torch.onnx.export(Classifier().eval(), (ids, torch.ones_like(ids)), str(path),
                      input_names=["input_ids", "attention_mask"], output_names=["output"],
                      dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"},
                                    "output": {0: "batch"}}, dynamo=False)


@pytest.mark.integration
def test_the_server_tokenises_text_and_answers_labels_and_counts_both(tmp_path):
    model, tokenizer = tmp_path / "classifier.onnx", tmp_path / "tokenizer.json"
    text.train_tokenizer(tokenizer, 300, seed=0)
    _text_classifier(model, 300, 10)
    port = free_port()
    server = subprocess.Popen([
        sys.executable, "-m", "inferbench.servers.fastapi_server", "--model-path", str(model),
        "--model-name", "clf", "--port", str(port), "--max-batch-size", "4",
        "--inputs", "input_ids:int64:16;attention_mask:int64:16",
        "--preprocess", f"text:{tokenizer}:16", "--postprocess", "topk:3"])
    try:
        url = f"http://127.0.0.1:{port}"
        assert poll_http_ok(f"{url}/v2/health/ready", 60)
        protocol = get_protocol("kserve-v2")
        texts = np.empty(2, dtype=object)
        texts[:] = [t.encode() for t in text.make_texts(2, 5, 30, seed=3)]
        request = protocol.build(Target(url, "clf", "text", "labels"), {"text": texts})
        status, headers, body = protocol.send_once(request)
        assert status == 200, body
        answer = protocol.decode(headers, body)
        assert answer["labels"].shape == answer["scores"].shape == (2, 3)
        assert all(label.startswith(b"class_") for label in answer["labels"].ravel())
        # The same labels as the model's own scores on the client's tokens give.
        import onnxruntime as ort

        tokens = text.preprocess_texts(texts, text.load_tokenizer(tokenizer, 16))
        (scores,) = ort.InferenceSession(str(model)).run(None, tokens)
        expected, _ = labels.top_k(scores, 3, labels.class_labels(10))
        assert answer["labels"].tolist() == expected.tolist()
        with urllib.request.urlopen(f"{url}/v2/models/clf/stats") as response:
            stats = json.loads(response.read())["model_stats"][0]
        assert stats["preprocess_ns"] > 0 and stats["postprocess_ns"] > 0
        # The handler's whole time holds the pipeline, the queue and the inference.
        assert stats["success_count"] == stats["request_count"] == 1
        assert stats["success_ns"] >= (stats["preprocess_ns"] + stats["postprocess_ns"]
                                       + stats["queue_ns"] + stats["compute_ns"])
    finally:
        server.terminate()
        server.wait(10)


# --- whole runs: real PostgreSQL, a real server ---

def _run_cnn(run_id: str, pre: str, post: str) -> dict:
    spec = {**QUICK, "name": run_id, "model": {**CNN, "input_shape": [3, 64, 64]},
            "batch_sizes": [2], "workload": {"arrival": "poisson", "rate_rps": 20, "seed": 3},
            "pipeline": {"preprocess": pre, "postprocess": post, "top_k": 3,
                         "image": {"width": 320, "height": 240}},
            "min_duration_s": 3, "min_requests": 60,
            "max_late_send_pct": 25}  # checks the pipeline, not this shared VM's stalls
    return run_stages_for(run_id, spec, "onnxruntime")


@pytest.mark.integration
@pytest.mark.parametrize("side", ["client", "server"])
def test_a_run_with_processing_stores_its_times_and_reports_them(inferbench_env, db_url, side):
    run_id = f"pipeline-{side}"
    summary = _run_cnn(run_id, side, side)
    assert summary["verdict"] == "VALID", summary["reasons"]
    point, rows = point_and_requests(db_url, run_id, "bytes_sent", "bytes_received",
                                     "client_preprocess_ms", "client_postprocess_ms")
    other = "server" if side == "client" else "client"
    assert point[f"{side}_preprocess_ms"] > 0 and point[f"{side}_postprocess_ms"] > 0
    assert point[f"{other}_preprocess_ms"] is None and point[f"{other}_postprocess_ms"] is None
    if side == "client":  # the tensors travel, each request carries its payload's time
        assert all(row.bytes_sent > 2 * 3 * 64 * 64 * 4 for row in rows)
        assert all(row.client_preprocess_ms > 0 and row.client_postprocess_ms > 0
                   for row in rows)
    else:  # the JPEGs travel, labels come back
        assert all(row.bytes_sent < 2 * 3 * 64 * 64 * 4 for row in rows)
        assert all(row.client_preprocess_ms is None for row in rows)
    report = Path(summary["report"]).read_text()
    assert f"pipeline=pre={side},post={side}" in report
    assert "pre-processing (ms)" in report
