"""MLServer runtime serving an ONNX model with ONNX Runtime (the "mlserver" platform).

Copied by `MLServerBackend.prepare` into the model's directory as `inferbench_onnx_runtime.py`
and named by model-settings.json's `implementation`. MLServer puts the folder of
model-settings.json on sys.path while it imports the implementation (`ModelSettings.
implementation` in mlserver/settings.py), in the main process and in each parallel worker.

It runs inside MLServer's own virtual environment (inferbench.sidevenv "mlserver"), so it
must not import inferbench; only mlserver, onnxruntime and numpy are available there.

Batching is MLServer's (adaptive batching, model-settings.json max_batch_size /
max_batch_time): when on, `predict` receives the merged request, whose input holds the
concatenated rows of every request in the batch, and MLServer splits the flat output back
by each request's rows. So the output must be encoded flat (NumpyCodec does) with the
batch dimension first.

Device: model-settings.json's extra `device` ("cpu" or "gpu:<index>") picks ONNX Runtime's
CPU or CUDA execution provider; a CUDA provider that is not the active one (ONNX Runtime
falls back to the CPU quietly) fails the load. Once loaded, the runtime writes where the
model runs to the extra `device_report` file, which the serve stage reads (MLServer's
metadata does not say).

Inference time: `predict` times ONNX Runtime's `session.run` and adds it, once per client
request the call answers, to the histogram COMPUTE_METRIC, registered through MLServer's
custom metrics API (`mlserver.register`). Its `_count` is the client requests whose
inference completed and its `_sum` their total inference seconds; a merged request's run
counts in full for each of its requests, since each of them waited for the whole of it.
MLServer's parallel workers write it to Prometheus' multiprocess files (settings.json
`metrics_dir`), summed across workers on the metrics port's /metrics, where
`MLServerBackend.server_stats` reads it before and after each measured point. The
adaptive batcher hands `predict` one merged request and nothing in it says how many
client requests it holds, so this module makes the batcher build its batches with
`CountedBatchedRequests`, which writes that number into the merged request's parameters
(REQUESTS_PARAMETER); MLServer imports this module in its main process, where the batcher
runs, as well as in each worker.
"""

from __future__ import annotations

import json
import os
import time

import mlserver
import mlserver.batching.adaptive
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.batching.requests import BatchedRequests
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, Parameters, RequestInput
from mlserver.utils import get_model_uri

OUTPUT_NAME = "output"
# Histogram of each completed client request's inference seconds (read by the serve stage:
# inferbench/backends/mlserver.py COMPUTE_METRIC).
COMPUTE_METRIC = "inferbench_request_compute_seconds"
# Parameter of a merged request: how many client requests the adaptive batcher merged.
REQUESTS_PARAMETER = "inferbench_batched_requests"
# ONNX Runtime's element types of the inputs the benchmark sends, as V2 datatypes and numpy.
ORT_TYPES = {"tensor(float)": ("FP32", np.float32), "tensor(int64)": ("INT64", np.int64),
             "tensor(int32)": ("INT32", np.int32), "tensor(double)": ("FP64", np.float64)}


def decode_batch(request_input: RequestInput, datatype: str, dtype) -> np.ndarray:
    """The request's tensor as a contiguous array of the model input's type, batch
    dimension first.

    JSON requests carry `data` as a (possibly nested) list; gRPC requests with
    `raw_input_contents` have had their bytes unpacked into `data` by MLServer before the
    runtime sees them (mlserver/raw.py), so both arrive as `data` with a `shape`."""
    if request_input.datatype != datatype:
        raise InferenceError(f"input {request_input.name!r} has datatype "
                             f"{request_input.datatype!r}; this model takes {datatype}")
    array = NumpyCodec.decode_input(request_input)
    return np.ascontiguousarray(array, dtype=dtype)


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    """The same ONNX Runtime settings as every other platform of the benchmark."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def providers_for(device: str) -> list:
    """Execution providers for "cpu" or "gpu[:<index>]" (the CPU one last: ONNX Runtime
    places on it the nodes the CUDA provider lacks)."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def report_device(path: str, device: str, active: list[str]) -> None:
    """Write where the session runs, whole (temporary file, then rename)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as out:
        json.dump({"device": device, "providers": active, "onnxruntime": ort.__version__,
                   "pid": os.getpid(),
                   "accelerator": None if device == "cpu" else active[0]}, out)
    os.replace(tmp, path)


class CountedBatchedRequests(BatchedRequests):
    """MLServer's batch of client requests, whose merged request also carries how many
    client requests it merges (REQUESTS_PARAMETER), for `OnnxRuntimeModel.predict` to count
    its inference once per client request."""

    def _merge_requests(self) -> InferenceRequest:
        merged = super()._merge_requests()
        if merged.parameters is None:
            merged.parameters = Parameters()
        setattr(merged.parameters, REQUESTS_PARAMETER, len(self.inference_requests))
        return merged


# The adaptive batcher (mlserver/batching/adaptive.py) builds each batch as
# `BatchedRequests(to_batch)` from its module's namespace: the subclass takes that name.
mlserver.batching.adaptive.BatchedRequests = CountedBatchedRequests


def requests_in(payload: InferenceRequest) -> int:
    """The client requests `payload` answers: those the adaptive batcher merged into it,
    or 1 for a request that reaches `predict` as it came."""
    count = getattr(payload.parameters, REQUESTS_PARAMETER, None) if payload.parameters else None
    return int(count) if count else 1


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self._settings)
        extra = (self._settings.parameters.extra if self._settings.parameters else None) or {}
        device = str(extra.get("device", "cpu"))
        self._session = ort.InferenceSession(
            path, sess_options=session_options(int(extra.get("intra_op_threads", 1))),
            providers=providers_for(device))
        active = self._session.get_providers()
        if device != "cpu" and active[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"ONNX Runtime was asked to run on {device} but runs on "
                               f"{active!r}; refusing to serve on the CPU under a GPU label")
        if extra.get("device_report"):
            report_device(str(extra["device_report"]), device, active)
        # name -> (V2 datatype, numpy type) of each graph input, in the graph's order.
        self._ort_inputs = {i.name: ORT_TYPES.get(i.type, ("FP32", np.float32))
                            for i in self._session.get_inputs()}
        self._ort_output = self._session.get_outputs()[0].name
        # Labelled as `mlserver.log` labels custom metrics (model name, version or "").
        self._compute_seconds = mlserver.register(
            COMPUTE_METRIC, "Inference (ONNX Runtime session.run) seconds of each completed "
            "client request; a merged request's run counts for each of its requests",
        ).labels(model_name=self.name, model_version=self.version or "")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        given = {i.name: i for i in payload.inputs}
        missing = [name for name in self._ort_inputs if name not in given]
        if missing:
            raise InferenceError(f"the request lacks input(s) {missing!r} (it has "
                                 f"{sorted(given)!r})")
        feeds = {name: decode_batch(given[name], datatype, dtype)
                 for name, (datatype, dtype) in self._ort_inputs.items()}
        started_ns = time.perf_counter_ns()
        (result,) = self._session.run([self._ort_output], feeds)
        seconds = (time.perf_counter_ns() - started_ns) / 1e9
        # Observed directly: mlserver.log would also attach its labels as an exemplar,
        # which prometheus_client refuses beyond 128 characters (a long model name).
        for _ in range(requests_in(payload)):
            self._compute_seconds.observe(seconds)
        output = np.ascontiguousarray(result, dtype=np.float32)
        return InferenceResponse(
            model_name=self.name, model_version=self.version, id=payload.id,
            outputs=[NumpyCodec.encode_output(OUTPUT_NAME, output)])
