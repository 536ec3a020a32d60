"""Does BERT-Base serve on a GPU through the project's TorchScript path, and how fast?

Builds bert_base (seeded weights), traces it to TorchScript on the GPU as the convert stage
does for a GPU spec, serves it with the project's FastAPI server on that GPU
(`--runtime torchscript --inputs input_ids:int64:128;attention_mask:int64:128`), checks one
answer against PyTorch on the CPU and times requests one at a time at batch 1, 8 and 32
(sequence 128). Needs a CUDA build of torch and the server's packages on PYTHONPATH.

    python3 benchmarks/gpu/bert_torchscript.py [--device gpu:0] [--requests 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inferbench.load.protocols import Target, get_protocol  # noqa: E402
from inferbench.models import signature  # noqa: E402
from inferbench.models.generator import build_model, sample_inputs  # noqa: E402
from inferbench.netutil import free_port  # noqa: E402
from inferbench.servers.runtimes import torch_device  # noqa: E402
from inferbench.spec import ModelSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="gpu:0")
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    spec = ModelSpec(architecture="bert_base")
    model = build_model(spec).eval()
    example = sample_inputs(spec, 1, 0)
    where = torch_device(args.device)
    workdir = Path(tempfile.mkdtemp())
    with torch.no_grad():
        reference = model(*example.values()).numpy()
        torch.jit.trace(model.to(where), tuple(t.to(where) for t in example.values())
                        ).save(str(workdir / "bert.pt"))
    port = free_port()
    server = subprocess.Popen([
        sys.executable, "-m", "inferbench.servers.fastapi_server", "--runtime", "torchscript",
        "--model-path", str(workdir / "bert.pt"), "--model-name", "bert",
        "--inputs", signature.to_text(spec.generated_inputs), "--port", str(port),
        "--device", args.device, "--threads", "4"])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/v2/models/bert/ready", timeout=2)
                break
            except OSError:
                time.sleep(1)
        meta = json.loads(urllib.request.urlopen(f"{url}/v2/models/bert").read())
        print("metadata:", {k: meta[k] for k in ("device", "inputs", "platform", "versions")})
        protocol, target = get_protocol("kserve-v2"), Target(url, "bert")
        batch = {k: v.numpy() for k, v in example.items()}
        _, headers, body = protocol.send_once(protocol.build(target, batch))
        answer = protocol.decode(headers, body)["output"]
        print(f"max |served on {args.device} - PyTorch on the CPU|: "
              f"{float(np.abs(answer - reference).max()):.3g}")
        for size in (1, 8, 32):
            request = protocol.build(target, signature.sample_inputs(
                spec.generated_inputs, size, np.random.default_rng(size)))
            for _ in range(5):
                protocol.send_once(request)
            times = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                protocol.send_once(request)
                times.append((time.perf_counter() - t0) * 1e3)
            print(f"batch {size} sequence 128 on {args.device}: p50 "
                  f"{np.percentile(times, 50):.2f} ms, min {min(times):.2f} ms "
                  f"({args.requests} requests one at a time)")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
