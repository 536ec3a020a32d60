"""Triton Python-backend model that runs an ONNX file with ONNX Runtime.

This file is copied verbatim into the model repository as `<model>/1/model.py` and is
executed by `triton_python_backend_stub`, which embeds the base Python interpreter (it
only takes the venv's prefix because the server's PATH has the venv's bin/ first). It
therefore must not import `inferbench`, which need not be importable there; everything it
needs comes from the `parameters` of config.pbtxt:

- `onnx_path`: absolute path of the ONNX model (external-data files sit beside it);
- `site_packages`: the venv's site-packages (os.pathsep-separated): put on sys.path if
  missing, and used to check that numpy really comes from there;
- `intra_op_threads`: ONNX Runtime intra-op threads, the same budget every platform gets.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _parameter(config: dict[str, Any], key: str) -> str:
    try:
        return config["parameters"][key]["string_value"]
    except KeyError:
        raise ValueError(f"config.pbtxt has no parameter {key!r}") from None


def _check_numpy_origin(site_packages: list[str]) -> None:
    """Fail loudly if the stub already imported numpy from elsewhere.

    The stub imports numpy (through triton_python_backend_utils) before this file runs, so
    editing sys.path here is too late for numpy; and the stub's interpreter is isolated,
    so PYTHONPATH does not help either. If the base interpreter has its own numpy, that one
    is loaded. A numpy other than the one onnxruntime was installed with does not fail on
    import: it produced empty output tensors (binary_data_size 0) in testing. So check.
    """
    numpy = sys.modules.get("numpy")
    origin = os.path.realpath(getattr(numpy, "__file__", "") or "")
    if numpy is not None and not any(
            origin.startswith(os.path.realpath(p) + os.sep) for p in site_packages):
        raise RuntimeError(
            f"numpy was imported from {origin}, not from {os.pathsep.join(site_packages)}; "
            "start tritonserver with that environment's bin/ directory first on PATH")


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        site_packages = [p for p in _parameter(config, "site_packages").split(os.pathsep) if p]
        # Started as InferBench starts it (the venv's bin/ first on PATH), the stub's
        # interpreter already runs with the venv's prefix and this is a no-op. Otherwise it
        # runs as the bare base interpreter, without the venv's packages at all.
        for path in reversed(site_packages):
            if path not in sys.path:
                sys.path.insert(0, path)
        _check_numpy_origin(site_packages)

        import numpy as np
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self._np = np
        self._pb_utils = pb_utils
        # name and numpy type of each input, in the config's (the signature's) order
        self._inputs = [(i["name"], pb_utils.triton_string_to_numpy(i["data_type"]))
                        for i in config["input"]]
        self._output_name = config["output"][0]["name"]

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_parameter(config, "intra_op_threads"))
        # One request batch runs at a time per instance; inter-op parallelism would only
        # add threads beyond the budget the other platforms get.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(
            _parameter(config, "onnx_path"), sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._ort_output = self._session.get_outputs()[0].name

    def execute(self, requests: list[Any]) -> list[Any]:
        # With dynamic batching Triton hands over several requests at once (each with its
        # own client batch): run them as one concatenated batch, the point of batching,
        # and split the output back by each request's rows. Without it there is one.
        pb_utils, np = self._pb_utils, self._np
        batches, errors = [], {}  # per request: its input arrays by name
        for i, request in enumerate(requests):
            try:
                batches.append({name: np.ascontiguousarray(
                    pb_utils.get_input_tensor_by_name(request, name).as_numpy(), dtype=dtype)
                    for name, dtype in self._inputs})
            except Exception as exc:  # noqa: BLE001 - one bad request must not fail the others
                errors[i] = f"{type(exc).__name__}: {exc}"
                batches.append(None)
        good = [b for b in batches if b is not None]
        outputs: list[Any] = []
        if good:
            try:
                feeds = {name: good[0][name] if len(good) == 1
                         else np.concatenate([b[name] for b in good], axis=0)
                         for name, _ in self._inputs}
                result = self._session.run([self._ort_output], feeds)[0]
                result = result.astype(np.float32, copy=False)
                sizes = [len(b[self._inputs[0][0]]) for b in good]
                outputs = np.split(result, np.cumsum(sizes)[:-1], axis=0)
            except Exception as exc:  # noqa: BLE001 - answer every request with the error
                errors.update({i: f"{type(exc).__name__}: {exc}"
                               for i, b in enumerate(batches) if b is not None})
        responses, rows = [], iter(outputs)
        for i in range(len(batches)):
            if i in errors:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(errors[i])))
                continue
            out = pb_utils.Tensor(self._output_name, np.ascontiguousarray(next(rows)))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses

    def finalize(self) -> None:
        self._session = None
