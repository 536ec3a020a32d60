"""The project's own server: ONNX Runtime behind FastAPI, speaking KServe V2 over HTTP.

By default one model instance: inference runs on a single dedicated thread (like a Triton
model with one instance), so requests queue in the server the same way on both platforms.
`--instances N` gives N sessions on N threads; `--dynamic-batching` merges concurrent
requests (up to `--max-batch-size` rows, waiting at most `--max-queue-delay-us`) through
`inferbench.servers.batcher`.
Run: python -m inferbench.servers.onnxruntime_server --model-path M.onnx --model-name m
"""

from __future__ import annotations

import argparse
from contextlib import asynccontextmanager

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from inferbench.backends.base import ServerConfig
from inferbench.load import v2protocol
from inferbench.servers.batcher import DynamicBatcher


def build_app(model_path: str, model_name: str, threads: int = 1,
              server: ServerConfig | None = None, max_batch_size: int = 1) -> FastAPI:
    server = server or ServerConfig()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # One session per instance, as Triton loads one model per instance.
    sessions = [ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
                for _ in range(server.instance_count)]
    session = sessions[0]
    input_meta = {i.name: i for i in session.get_inputs()}
    output_names = [o.name for o in session.get_outputs()]
    batcher = DynamicBatcher(
        [lambda feeds, s=s: s.run(output_names, feeds) for s in sessions],
        dynamic_batching=server.dynamic_batching, max_batch_size=max_batch_size,
        max_delay_us=server.max_queue_delay_us)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="InferBench ONNX Runtime server", docs_url=None, redoc_url=None,
                  lifespan=lifespan)

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

    @app.get("/v2/models/{name}/stats")
    async def stats(name: str) -> Response:
        """Cumulative batcher counters, named after Triton's statistics extension."""
        if name != model_name:
            return JSONResponse({"error": f"unknown model {name!r}"}, status_code=404)
        c = batcher.stats
        return JSONResponse({"model_stats": [{
            "name": model_name, "inference_count": c.rows, "execution_count": c.executions,
            "request_count": c.requests, "queue_ns": c.queue_ns, "compute_ns": c.compute_ns}]})

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
        results = await batcher.submit(feeds)
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
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--dynamic-batching", action="store_true")
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--max-queue-delay-us", type=int, default=0)
    args = parser.parse_args(argv)
    server = ServerConfig(dynamic_batching=args.dynamic_batching,
                          max_queue_delay_us=args.max_queue_delay_us,
                          instance_count=args.instances)
    app = build_app(args.model_path, args.model_name, args.threads, server,
                    args.max_batch_size)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
