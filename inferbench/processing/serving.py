"""Pre- and post-processing inside the project's FastAPI server, timed.

With `--preprocess image:H,W` the server takes each request's JPEGs as a BYTES input named
`image` and decodes them to the model's float tensor; with `--preprocess text:TOKENIZER:L`
it takes texts as a BYTES input named `text` and tokenises them to input_ids and
attention_mask of L tokens. With `--postprocess topk:K` it answers the K most likely labels
(`labels`, BYTES) and their probabilities (`scores`, FP32) instead of the scores of every
class. Both run in a worker thread (PIL and the tokenizer release the interpreter lock), so
one request's decoding does not hold up the others' I/O, as a real server's handler threads
do. Their time is counted apart from the queue and the inference (`counters`), for the
report's split.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inferbench.processing import images, labels, text

IMAGE_INPUT, TEXT_INPUT = "image", "text"
LABELS_OUTPUT, SCORES_OUTPUT = "labels", "scores"


@dataclass
class Counters:
    """Cumulative: requests processed and the time it took, each side of the model."""

    preprocess_requests: int = 0
    preprocess_ns: int = 0
    postprocess_requests: int = 0
    postprocess_ns: int = 0


@dataclass
class ServerPipeline:
    model_inputs: list[str]
    image_hw: tuple[int, int] | None = None
    tokenizer: object | None = None
    top_k: int | None = None
    counters: Counters = field(default_factory=Counters)

    @classmethod
    def from_args(cls, preprocess: str | None, postprocess: str | None,
                  model_inputs: list[str]) -> ServerPipeline:
        """From the server's `--preprocess` / `--postprocess` values (see the module)."""
        pipeline = cls(model_inputs)
        if preprocess:
            kind, _, rest = preprocess.partition(":")
            if kind == "image":
                h, w = (int(x) for x in rest.split(","))
                pipeline.image_hw = (h, w)
            elif kind == "text":
                path, _, sequence = rest.rpartition(":")
                pipeline.tokenizer = text.load_tokenizer(Path(path), int(sequence))
            else:
                raise ValueError(f"--preprocess {preprocess!r}: expected image:H,W or "
                                 "text:TOKENIZER.json:LENGTH")
        if postprocess:
            kind, _, k = postprocess.partition(":")
            if kind != "topk" or not k.isdigit():
                raise ValueError(f"--postprocess {postprocess!r}: expected topk:K")
            pipeline.top_k = int(k)
        return pipeline

    @property
    def preprocesses(self) -> bool:
        return self.image_hw is not None or self.tokenizer is not None

    def _preprocess(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.image_hw is not None:
            if IMAGE_INPUT not in tensors:
                raise ValueError(f"this server decodes images: send them as a BYTES input "
                                 f"named {IMAGE_INPUT!r} (got {sorted(tensors)})")
            batch = images.preprocess_images(tensors[IMAGE_INPUT].ravel(), *self.image_hw)
            return {self.model_inputs[0]: batch}
        if TEXT_INPUT not in tensors:
            raise ValueError(f"this server tokenises text: send it as a BYTES input named "
                             f"{TEXT_INPUT!r} (got {sorted(tensors)})")
        tokens = text.preprocess_texts(tensors[TEXT_INPUT].ravel(), self.tokenizer)
        return {name: tokens[name] for name in self.model_inputs}

    async def preprocess(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's inputs from a request's raw inputs (unchanged without --preprocess)."""
        if not self.preprocesses:
            return tensors
        started = time.perf_counter_ns()
        feeds = await asyncio.to_thread(self._preprocess, tensors)
        self.counters.preprocess_ns += time.perf_counter_ns() - started
        self.counters.preprocess_requests += 1
        return feeds

    async def postprocess(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The answer's outputs: the top-k labels of the first output with --postprocess."""
        if self.top_k is None:
            return outputs
        started = time.perf_counter_ns()
        scores = next(iter(outputs.values()))
        names, probabilities = await asyncio.to_thread(labels.top_k, scores, self.top_k)
        self.counters.postprocess_ns += time.perf_counter_ns() - started
        self.counters.postprocess_requests += 1
        return {LABELS_OUTPUT: names, SCORES_OUTPUT: probabilities}
