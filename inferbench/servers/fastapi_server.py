"""The project's own server: a model runtime (ONNX Runtime or TorchScript, see
runtimes.py) behind FastAPI, speaking KServe V2 over HTTP.

By default one model instance: inference runs on a single dedicated thread (like a Triton
model with one instance), so requests queue in the server the same way on every platform.
`--instances N` gives N model instances on N threads; `--dynamic-batching` merges
concurrent requests (up to `--max-batch-size` rows, waiting at most `--max-queue-delay-us`)
through `inferbench.servers.batcher`. `--preprocess` / `--postprocess` make it take JPEGs
or texts and answer top-k labels (inferbench.processing.serving).
Run: python -m inferbench.servers.fastapi_server --runtime onnxruntime --model-path M.onnx \
    --model-name m
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from contextlib import asynccontextmanager

import numpy as np
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from inferbench.backends.base import ServerConfig
from inferbench.load import v2protocol
from inferbench.models import signature
from inferbench.models.signature import TensorSpec
from inferbench.processing.serving import ServerPipeline
from inferbench.servers.batcher import DynamicBatcher
from inferbench.servers.runtimes import load_instances
from inferbench.servers.stay_timer import StayCounters, StayTimer


def build_app(model_path: str, model_name: str, threads: int = 1,
              server: ServerConfig | None = None, max_batch_size: int = 1,
              runtime: str = "onnxruntime", inputs: Sequence[TensorSpec] | None = None,
              device: str = "cpu", preprocess: str | None = None,
              postprocess: str | None = None) -> FastAPI:
    server = server or ServerConfig()
    instances = load_instances(runtime, model_path, threads, server.instance_count,
                               inputs, precision=server.openvino_precision, device=device)
    first = instances[0]
    input_names = [name for name, _, _ in first.inputs]
    output_names = first.output_names
    pipeline = ServerPipeline.from_args(preprocess, postprocess, input_names)
    stays = StayCounters()
    batcher = DynamicBatcher(
        [inst.run for inst in instances],
        dynamic_batching=server.dynamic_batching, max_batch_size=max_batch_size,
        max_delay_us=server.max_queue_delay_us)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"InferBench {first.platform} server", docs_url=None, redoc_url=None,
                  lifespan=lifespan)

    app.add_middleware(StayTimer, record=stays.add)

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
            "name": model_name, "platform": first.platform, "versions": [first.version],
            # Not in KServe V2 (clients ignore it): where the model really runs, which the
            # serve stage records and the analysis labels, prices and meters by.
            "device": first.device,
            "accelerator": first.accelerator,  # e.g. ONNX Runtime's Tensorrt or CUDA provider
            "inputs": [{"name": name, "datatype": datatype, "shape": shape}
                       for name, datatype, shape in first.inputs],
            "outputs": [{"name": n, "datatype": "FP32"} for n in output_names],
        })

    @app.get("/v2/models/{name}/stats")
    async def stats(name: str) -> Response:
        """Cumulative batcher counters, named after Triton's statistics extension."""
        if name != model_name:
            return JSONResponse({"error": f"unknown model {name!r}"}, status_code=404)
        c, p = batcher.stats, pipeline.counters
        return JSONResponse({"model_stats": [{
            "name": model_name, "inference_count": c.rows, "execution_count": c.executions,
            "request_count": c.requests, "queue_ns": c.queue_ns, "compute_ns": c.compute_ns,
            # Only where the server pre- / post-processes (processing/serving.py).
            **({"preprocess_ns": p.preprocess_ns} if pipeline.preprocesses else {}),
            **({"postprocess_ns": p.postprocess_ns} if pipeline.top_k else {}),
            # Every answered request's stay, from its head parsed to its answer written,
            # less the waits for its body's bytes (stay_timer.py): the queue and compute
            # above, and the routing, decoding, pipeline and encoding around them (as
            # Triton's `success.ns`); and those waits, apart.
            "success_count": stays.requests, "success_ns": stays.stay_ns,
            "receive_ns": stays.receive_ns}]})

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        if name != model_name:
            return JSONResponse({"error": f"unknown model {name!r}"}, status_code=404)
        body = await request.body()
        try:
            tensors, header = v2protocol.decode_request(
                body, request.headers.get(v2protocol.HEADER_LENGTH))
            tensors = await pipeline.preprocess(tensors)
            feeds = {k: v for k, v in tensors.items() if k in input_names}
            if set(feeds) != set(input_names):
                raise ValueError(f"expected inputs {sorted(input_names)}, got "
                                 f"{sorted(tensors)}")
        except (ValueError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        results = await batcher.submit(feeds)
        wanted = header.get("outputs") or [{"name": n} for n in output_names]
        binary = any((o.get("parameters") or {}).get("binary_data") for o in wanted)
        outputs = await pipeline.postprocess(
            {n: np.asarray(r) for n, r in zip(output_names, results, strict=True)})
        payload, headers = v2protocol.encode_response(model_name, outputs, binary,
                                                      header.get("id"))
        return Response(content=payload, headers=headers)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runtime", default="onnxruntime",
                        help="onnxruntime (an .onnx file) or torchscript (a .pt file)")
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--inputs", default=None,
                        help="the model's inputs, name:dtype:one sample's shape, ';' between "
                        "them, e.g. input_ids:int64:128;attention_mask:int64:128 (torchscript "
                        "needs them or --input-shape)")
    parser.add_argument("--input-shape", default=None,
                        help="one float32 input's sample shape, e.g. 3,32,32 (short for "
                        "--inputs input:float32:3,32,32)")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--dynamic-batching", action="store_true")
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--max-queue-delay-us", type=int, default=0)
    parser.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                        help="inference precision (openvino only)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, gpu (the first GPU) or gpu:<index>")
    parser.add_argument("--preprocess", default=None,
                        help="take raw inputs: image:H,W (JPEGs, BYTES input 'image') or "
                        "text:TOKENIZER.json:LENGTH (texts, BYTES input 'text')")
    parser.add_argument("--postprocess", default=None,
                        help="topk:K: answer the K most likely labels and their probabilities")
    args = parser.parse_args(argv)
    server = ServerConfig(dynamic_batching=args.dynamic_batching,
                          max_queue_delay_us=args.max_queue_delay_us,
                          instance_count=args.instances, openvino_precision=args.precision)
    inputs = signature.from_text(args.inputs) if args.inputs else (
        signature.single_input([int(x) for x in args.input_shape.split(",")])
        if args.input_shape else None)
    app = build_app(args.model_path, args.model_name, args.threads, server,
                    args.max_batch_size, args.runtime, inputs, args.device,
                    args.preprocess, args.postprocess)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
