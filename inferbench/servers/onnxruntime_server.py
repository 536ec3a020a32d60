"""The project's own server: ONNX Runtime behind FastAPI, speaking KServe V2 over HTTP.

One model instance: inference runs on a single dedicated thread (like a Triton model with
one instance), so requests queue in the server the same way on both platforms.
Run: python -m inferbench.servers.onnxruntime_server --model-path M.onnx --model-name m
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from inferbench.load import v2protocol


def build_app(model_path: str, model_name: str, threads: int = 1) -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    input_meta = {i.name: i for i in session.get_inputs()}
    output_names = [o.name for o in session.get_outputs()]
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort-instance")
    app = FastAPI(title="InferBench ONNX Runtime server", docs_url=None, redoc_url=None)

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    async def health() -> dict:
        return {}

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        return Response(status_code=200 if name == model_name else 404)

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> Response:
        if name != model_name:
            return JSONResponse({"error": f"unknown model {name!r}"}, status_code=404)
        return JSONResponse({
            "name": model_name, "platform": "onnxruntime", "versions": [ort.__version__],
            "inputs": [{"name": i.name, "datatype": "FP32", "shape": _shape(i.shape)}
                       for i in input_meta.values()],
            "outputs": [{"name": n, "datatype": "FP32"} for n in output_names],
        })

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        if name != model_name:
            return JSONResponse({"error": f"unknown model {name!r}"}, status_code=404)
        body = await request.body()
        try:
            tensors, header = v2protocol.decode_request(
                body, request.headers.get(v2protocol.HEADER_LENGTH))
            feeds = {k: v for k, v in tensors.items() if k in input_meta}
            if set(feeds) != set(input_meta):
                raise ValueError(f"expected inputs {sorted(input_meta)}, got {sorted(tensors)}")
        except (ValueError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(executor, session.run, output_names, feeds)
        wanted = header.get("outputs") or [{"name": n} for n in output_names]
        binary = any((o.get("parameters") or {}).get("binary_data") for o in wanted)
        outputs = {n: np.asarray(r) for n, r in zip(output_names, results, strict=True)}
        payload, headers = v2protocol.encode_response(model_name, outputs, binary,
                                                      header.get("id"))
        return Response(content=payload, headers=headers)

    return app


def _shape(shape: list) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    app = build_app(args.model_path, args.model_name, args.threads)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
