"""The load side of a pipeline: what each request sends, and the client's own processing
time per request.

With pre-processing, every payload starts as raw inputs (seeded JPEGs or texts, images.py /
text.py). On the server, the request carries them as a BYTES input (`image` or `text`).
On the client, the request carries the tensors this host made from them, and the time that
took is the client's pre-processing time of every request that sends that payload: each
payload is processed PROCESS_REPEATS times before the point and the median kept. The client
is one device per user, so one user's decoding never waits for another's: the time is
measured once per payload, on this host's CPU (the report says so), and added to the
request, rather than run inside the load generator, where it would queue every simulated
user behind one process. Post-processing on the client is timed the same way, on each
payload's answer.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inferbench.models.signature import TensorSpec
from inferbench.processing import images, labels, text
from inferbench.processing.serving import IMAGE_INPUT, TEXT_INPUT

PROCESS_REPEATS = 5
TOKENIZER_VOCAB = 8000  # at most; the model's own vocabulary if smaller


def tokenizer_file(run_dir: Path, inputs: tuple[TensorSpec, ...], seed: int) -> Path:
    """The run's tokenizer (model/tokenizer.json), trained on first use: the serve stage
    (for a server that tokenises) and the load stage (for clients that do) share it."""
    path = run_dir / "model" / "tokenizer.json"
    if not path.exists():
        vocab = min(TOKENIZER_VOCAB, inputs[0].vocab or TOKENIZER_VOCAB)
        text.train_tokenizer(path, vocab, seed)
    return path


def _median_ms(work: Callable[[], object]) -> float:
    times = []
    for _ in range(PROCESS_REPEATS):
        started = time.perf_counter_ns()
        work()
        times.append((time.perf_counter_ns() - started) / 1e6)
    return statistics.median(times)


@dataclass
class PipelinePayloads:
    """The payloads a point sends and, per payload, the client's processing time (ms)."""

    batches: list[dict[str, np.ndarray]]
    preprocess_ms: np.ndarray | None = None   # on the client only
    postprocess_ms: np.ndarray | None = None  # on the client only; set after the first answers

    def per_request(self, payload: np.ndarray) -> dict[str, np.ndarray]:
        """Each recorded request's client times, from the payload it sent."""
        payload = np.asarray(payload, dtype=np.int64)
        out = {}
        if self.preprocess_ms is not None:
            out["client_preprocess_ms"] = self.preprocess_ms[payload]
        if self.postprocess_ms is not None:
            out["client_postprocess_ms"] = self.postprocess_ms[payload]
        return out


def pipeline_payloads(kind: str, on_client: bool, inputs: tuple[TensorSpec, ...],
                      batch_size: int, n: int, seed: int, *, image_size: tuple[int, int, int],
                      words: tuple[int, int], tokenizer: Path | None) -> PipelinePayloads:
    """`n` payloads of `batch_size` raw inputs each: sent raw (the server processes them) or
    as the tensors this host made of them, timed (`on_client`). `image_size` is the
    JPEGs' width, height and quality; `words` the texts' fewest and most words."""
    if kind == "image":
        width, height, quality = image_size
        raw = images.make_jpegs(n * batch_size, width, height, quality, seed)
        name = IMAGE_INPUT
    else:
        raw = [t.encode() for t in text.make_texts(n * batch_size, *words, seed)]
        name = TEXT_INPUT
    groups = [_bytes_array(raw[i * batch_size:(i + 1) * batch_size])
              for i in range(n)]
    if not on_client:
        return PipelinePayloads([{name: g} for g in groups])
    if kind == "image":
        _, h, w = inputs[0].shape

        def process(g):
            return {inputs[0].name: images.preprocess_images(g, h, w)}
    else:
        tok = text.load_tokenizer(tokenizer, inputs[0].shape[0])

        def process(g):
            tokens = text.preprocess_texts(g, tok)
            return {spec.name: tokens[spec.name] for spec in inputs}
    batches = [process(g) for g in groups]
    return PipelinePayloads(batches, np.array([_median_ms(lambda g=g: process(g))
                                               for g in groups]))


def client_postprocess_ms(answers: list[np.ndarray], top_k: int) -> np.ndarray:
    """Per payload: the client's time to turn its answer's scores into top-k labels."""
    return np.array([_median_ms(lambda a=a: labels.top_k(a, top_k)) for a in answers])


def _bytes_array(items: list[bytes]) -> np.ndarray:
    """An object array of bytes (np.array would make fixed-width byte strings)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def client_means_ms(arrays) -> dict[str, float | None]:
    """A point's mean client processing time per ok request (absent parts: nothing)."""
    from analysis.summary import request_latencies_ms

    ok, _ = request_latencies_ms(arrays)
    return {key: (float(np.asarray(arrays[key])[ok].mean()) if ok.any() else None)
            for key in ("client_preprocess_ms", "client_postprocess_ms") if key in arrays}
