"""Our generator against its peers: the highest open-loop rate each sustains, side by side.

Same endpoint (the reference server: 1 ms service time, 64 workers, so it never queues and
the tools are what is measured), same request bytes (a 1x4 FP32 KServe V2 binary infer
request), same Poisson target rates, each tool in its own process, one after the other at
each rate. Per tool and rate: the share of sends more than 1 ms after their scheduled time,
the achieved rate, p99 latency, and the client's CPU time per request (user + sys of the
tool's process over the run, warm-up and set-up included, interpreter start-up not).

What each peer can do about open loop (as used here):
- ours: a Poisson schedule from a seed, sends at their scheduled times whatever happened to
  earlier ones; latency from the scheduled time.
- locust (FastHttpUser, headless, run through its Python API like `locust --headless`):
  locust has no open-loop arrival process. Its `constant_throughput` wait paces each user's
  task starts but a slow answer still delays that user's next request (closed loop per
  user). The closest approximation, used here: N users, each its own Poisson stream at
  rate R/N (a thinned split of one Poisson stream), each waiting (gevent.sleep) until its
  next scheduled time; a send is late when the user was still waiting for its previous
  answer or gevent woke it late. Latency is recorded from the scheduled time too.
- MLPerf LoadGen (Server scenario, Poisson at server_target_qps): open loop by design; a
  Python SUT hands each query to a pool of threads that POST the request over keep-alive
  connections. LoadGen does not expose its schedule, so lateness is measured from the
  moment LoadGen called issue_queries to the moment a thread wrote the request (the SUT's
  part); LoadGen's own issue delay comes on top and is not visible.
- perf_analyzer (from tritonclient==2.51.0, request-rate mode): open loop with its own
  schedule; it is fed our Poisson gaps with --request-intervals, so the schedule is known
  and lateness and latency are computed from it as for ours (see run_perf_analyzer). It
  speaks to the reference server, which answers Triton's model-config request.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/loadgen/peers.py [--rates 100,200,400,800,1600] [--duration 8]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    ks_critical_1pct,
    ks_exponential,
    load_average,
    reference_server,
    v2_body,
)

HERE = Path(__file__).resolve().parent
TOOLS = ("inferbench", "inferbench-2proc", "locust", "mlperf-loadgen", "perf_analyzer")
LATE_NS = 1_000_000


def require(module: str, extra: str = "bench") -> None:
    import importlib.util

    # find_spec, not import: importing locust here would monkey-patch this driver (gevent).
    if importlib.util.find_spec(module) is None:
        sys.exit(f"this benchmark needs {module!r}: install the `{extra}` extra, e.g. "
                 f".venv/bin/pip install -e '.[{extra}]'")


def fitted_late_pct(lateness_ns: np.ndarray) -> float:
    """Late share with the schedule's origin fitted the way perf_analyzer's must be (the
    least-late send taken as on time): the like-for-like column between the two tools."""
    if lateness_ns.size == 0:
        return 100.0
    return 100 * float(np.mean(lateness_ns - lateness_ns.min() > LATE_NS))


def result(sent_late: np.ndarray, latency_ms: np.ndarray, n_ok: int, seconds: float) -> dict:
    from analysis.percentiles import exact_percentile

    return {"late_pct": 100 * float(np.mean(sent_late)) if sent_late.size else 100.0,
            "achieved_rps": n_ok / seconds, "n": int(sent_late.size),
            "p99_ms": exact_percentile(latency_ms, 99), "p999_ms": exact_percentile(
                latency_ms, 99.9), "max_ms": float(latency_ms.max()) if latency_ms.size
            else None}


# --------------------------------------------------------------------------- tools
def run_inferbench(url: str, rate: float, duration: float, seed: int) -> dict:
    from inferbench.load.runner import Request, StopRule, run_point

    body, headers = v2_body()
    r = run_point([Request(url, body, headers)], rate_rps=rate, seed=seed, warmup_s=1.0,
                  rule=StopRule(duration, 0, duration), request_timeout_s=10)
    return inferbench_result(r)


def inferbench_result(records) -> dict:
    """The table row of our own generator's records (one process or several)."""
    a = records.arrays()
    ok = (a["status"] == 200) & (a["done_ns"] >= 0)
    out = result((a["sent_ns"] - a["scheduled_ns"]) > LATE_NS,
                 (a["done_ns"] - a["scheduled_ns"])[ok] / 1e6, int(ok.sum()),
                 (records.ended_ns - records.started_ns) / 1e9)
    out["late_fitted_pct"] = fitted_late_pct(a["sent_ns"] - a["scheduled_ns"])
    return out


def run_inferbench_2proc(url: str, rate: float, duration: float, seed: int) -> dict:
    """Ours with the Poisson stream split over 2 issuer processes (CPU of both counted)."""
    from inferbench.load.arrivals import Schedule, poisson_offsets_ns
    from inferbench.load.multiprocess import run_point_processes
    from inferbench.load.runner import Request, StopRule

    body, headers = v2_body()
    r = run_point_processes([Request(url, body, headers)],
                            schedule=lambda s: Schedule(poisson_offsets_ns(rate, s)),
                            processes=2, seed=seed, warmup_s=1.0,
                            rule=StopRule(duration, 0, duration), request_timeout_s=10)
    out = inferbench_result(r)
    out["children_cpu_s"] = r.client_cpu_s  # process_time() of the parent misses them
    return out


def run_locust(url: str, rate: float, duration: float, seed: int) -> dict:
    import gevent
    from locust import FastHttpUser, task
    from locust.env import Environment

    from inferbench.load.arrivals import partition_offsets_ns, poisson_offsets_ns

    body, headers = v2_body()
    users = max(8, min(200, int(rate / 10)))  # enough users that few wait on an answer
    base = url.split("/v2/")[0]
    path = url[len(base):]
    start_ns = time.time_ns() + 1_000_000_000  # every user starts from the same origin
    late: list[bool] = []
    lat_ms: list[float] = []
    counter = iter(range(users))

    class OpenLoopUser(FastHttpUser):
        host = base

        def on_start(self) -> None:
            k = next(counter)
            self.schedule = partition_offsets_ns(poisson_offsets_ns(rate, seed), users, k,
                                                 seed + 1)

        def wait_time(self) -> float:
            return 0.0

        @task
        def send(self) -> None:
            scheduled = start_ns + next(self.schedule)
            if scheduled > start_ns + duration * 1e9:
                gevent.sleep(3600)  # this user's share of the run is over
                return
            delay = (scheduled - time.time_ns()) / 1e9
            if delay > 0:
                gevent.sleep(delay)
            sent = time.time_ns()
            self.client.post(path, data=body, headers=headers, name="infer")
            late.append(sent - scheduled > LATE_NS)
            lat_ms.append((time.time_ns() - scheduled) / 1e6)

    env = Environment(user_classes=[OpenLoopUser])
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users * 100)
    gevent.sleep(1.0 + duration + 2.0)  # the last answers come in during the 2 s
    runner.quit()
    failures = env.stats.total.num_failures
    return result(np.asarray(late), np.asarray(lat_ms), len(lat_ms) - failures, duration)


def run_mlperf(url: str, rate: float, duration: float, seed: int) -> dict:
    import http.client
    import queue
    import tempfile
    import threading
    from urllib.parse import urlsplit

    import mlperf_loadgen as lg

    body, headers = v2_body()
    parts = urlsplit(url)
    work: queue.SimpleQueue = queue.SimpleQueue()
    late: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        while True:
            item = work.get()
            if item is None:
                return
            query_id, issued_ns = item
            sent = time.time_ns()
            conn.request("POST", parts.path, body=body, headers=headers)
            conn.getresponse().read()
            with lock:
                late.append(sent - issued_ns > LATE_NS)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(query_id, 0, 0)])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(32)]
    for t in threads:
        t.start()

    def issue(samples) -> None:
        now = time.time_ns()
        for s in samples:
            work.put((s.id, now))

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = rate
    settings.server_target_latency_ns = 100_000_000  # p99 <= 100 ms: far above 1 ms service
    settings.min_duration_ms = int(duration * 1000)
    settings.max_duration_ms = int(duration * 1000 * 3)
    settings.min_query_count = 1
    settings.schedule_rng_seed = seed
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda s: None, lambda s: None)
    outdir = tempfile.mkdtemp(prefix="mlperf-")
    log = lg.LogSettings()
    log.log_output.outdir = outdir
    log.log_output.copy_summary_to_stdout = False
    t0 = time.time()
    lg.StartTestWithLogSettings(sut, qsl, settings, log)
    seconds = time.time() - t0
    for _ in threads:
        work.put(None)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    summary = Path(outdir, "mlperf_log_summary.txt").read_text()
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in
                                                summary.splitlines() if ":" in line)}
    p99_ns = float(fields.get("99.00 percentile latency (ns)", "nan"))
    out = result(np.asarray(late), np.asarray([]), len(late), seconds)
    out["p99_ms"] = p99_ns / 1e6 if math.isfinite(p99_ns) else None
    out["p999_ms"] = float(fields.get("99.90 percentile latency (ns)", "nan")) / 1e6
    out["max_ms"] = float(fields.get("Max latency (ns)", "nan")) / 1e6
    out["achieved_rps"] = float(fields.get("Completed samples per second", "nan"))
    # LoadGen's own verdict: INVALID also when its early-stopping rule needs more queries.
    out["loadgen_result"] = fields.get("Result is", "?")
    return out


def run_locust_closed(url: str, rate: float, duration: float, seed: int) -> dict:
    """Locust as it is usually run: 10 users pacing themselves with constant_throughput;
    latency from the actual send (locust's own statistics). No schedule, so no lateness."""
    import gevent
    from locust import FastHttpUser, constant_throughput, task
    from locust.env import Environment

    body, headers = v2_body()
    users = 10
    base = url.split("/v2/")[0]
    path = url[len(base):]

    class PacedUser(FastHttpUser):
        host = base
        wait_time = constant_throughput(rate / users)

        @task
        def send(self) -> None:
            self.client.post(path, data=body, headers=headers, name="infer")

    env = Environment(user_classes=[PacedUser])
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users * 100)
    gevent.sleep(duration)
    runner.quit()
    stats = env.stats.total
    n = stats.num_requests
    return {"late_pct": None, "achieved_rps": n / duration, "n": n,
            "p99_ms": stats.get_response_time_percentile(0.99),
            "p999_ms": stats.get_response_time_percentile(0.999),
            "max_ms": stats.max_response_time}


def perf_analyzer_binary() -> tuple[str, dict[str, str]]:
    """perf_analyzer from the tritonclient 2.51.0 wheel (PERF_ANALYZER names it), with the
    libcudart of nvidia-cuda-runtime-cu12 on the library path (libb64 comes from apt)."""
    path = os.environ.get("PERF_ANALYZER", "")
    if not path or not os.access(path, os.X_OK):
        sys.exit("perf_analyzer: set PERF_ANALYZER to the binary from the tritonclient==2.51.0 "
                 "wheel (tritonclient-2.51.0.data/data/bin/perf_analyzer; newer builds need "
                 "glibc 2.38) and apt-get install libb64-0d")
    import nvidia.cuda_runtime

    lib = os.path.join(list(nvidia.cuda_runtime.__path__)[0], "lib")
    return path, {**os.environ, "LD_LIBRARY_PATH": lib}


def run_perf_analyzer(url: str, rate: float, duration: float, seed: int) -> dict:
    """perf_analyzer in request-rate mode, fed our Poisson gaps (--request-intervals), so its
    schedule is known: the k-th send is due at origin + sum of the first k gaps. The origin
    is unknown, so it is taken as the one that makes the earliest-relative send on time
    (lateness >= 0): a lower bound of its true lateness."""
    import tempfile
    from urllib.parse import urlsplit

    binary, env = perf_analyzer_binary()
    gaps_us = np.random.default_rng(seed).exponential(1e6 / rate, int(rate * duration * 3) + 100)
    gaps_us = np.maximum(gaps_us.astype(np.int64), 1)
    tmp = tempfile.mkdtemp(prefix="pa-")
    intervals, export = os.path.join(tmp, "intervals.txt"), os.path.join(tmp, "export.json")
    Path(intervals).write_text("\n".join(map(str, gaps_us.tolist())))
    parts = urlsplit(url)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [binary, "-m", "reference", "-u", f"{parts.hostname}:{parts.port}", "-i", "http",
         "--shape", "INPUT0:1,4", "--request-intervals", intervals, "--max-threads", "64",
         "--measurement-interval", str(int(duration * 1000 / 3)), "--stability-percentage",
         "999", "--profile-export-file", export], capture_output=True, text=True, env=env,
        timeout=duration * 10 + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-500:] + proc.stderr[-500:])
    reqs = json.loads(Path(export).read_text())["experiments"][0]["requests"]
    sent = np.sort(np.array([r["timestamp"] for r in reqs], dtype=np.int64))
    done = {r["timestamp"]: r["response_timestamps"][-1] for r in reqs
            if r["response_timestamps"]}
    n = sent.size
    reps = n // gaps_us.size + 1
    due = np.cumsum(np.tile(gaps_us, reps)[:n]) * 1000
    origin = int(np.min(sent - due))
    scheduled = origin + due
    lat = np.array([done[t] - s for t, s in zip(sent.tolist(), scheduled.tolist(),
                                                   strict=True) if t in done]) / 1e6
    seconds = (sent[-1] - sent[0]) / 1e9 if n > 1 else duration
    out = result((sent - scheduled) > LATE_NS, lat, len(done), seconds)
    out["late_fitted_pct"] = out["late_pct"]  # its origin is fitted already
    out["children_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime -
                                                                    before.ru_stime)
    return out


RUNNERS = {"inferbench": run_inferbench, "inferbench-2proc": run_inferbench_2proc,
           "locust": run_locust, "mlperf-loadgen": run_mlperf, "locust-closed": run_locust_closed,
           "perf_analyzer": run_perf_analyzer}


# --------------------------------------------------------------------------- driver
def one(tool: str, url: str, rate: float, duration: float, seed: int) -> dict:
    """Run one tool at one rate in its own process; add its CPU time per request."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", tool, "--url", url,
                               "--rates", str(rate), "--duration", str(duration),
                               "--seed", str(seed)], capture_output=True, text=True,
                              timeout=duration * 6 + 60, env={**os.environ, "PYTHONPATH": str(
                                  HERE.parents[1])})
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {duration * 6 + 60:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["cpu_ms_per_request"] = 1e3 * out["cpu_s"] / out["n"] if out["n"] else None
    return out


def server_ks(arrival_ns: np.ndarray, rate: float) -> str:
    """How Poisson the arrivals the server logged were (warm-up included: same rate)."""
    if arrival_ns.size < 10:
        return "-"
    gaps_s = np.diff(np.sort(arrival_ns)) / 1e9
    return f"{ks_exponential(gaps_s, rate):.4f} ({ks_critical_1pct(gaps_s.size):.4f})"


def _num(value: float | None, digits: int) -> str:
    """A table cell: the number, or "-" where the tool gave none (e.g. no request done)."""
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="100,200,400,800,1600")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--service-ms", type=float, default=1.0,
                        help="the reference server's service time (default 1 ms)")
    parser.add_argument("--workers", type=int, default=64,
                        help="its workers (default 64: it never queues)")
    parser.add_argument("--child", default=None)
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    rates = [float(x) for x in args.rates.split(",")]
    if args.child:
        cpu0 = time.process_time()
        out = RUNNERS[args.child](args.url, rates[0], args.duration, args.seed)
        out["cpu_s"] = time.process_time() - cpu0  # the run, not the interpreter's imports
        out["cpu_s"] += out.pop("children_cpu_s", 0.0)
        print(json.dumps(out))
        return
    tools = args.tools.split(",")
    for tool, module in (("locust", "locust"), ("mlperf-loadgen", "mlperf_loadgen")):
        if tool in tools:
            require(module)
    print(f"load average before: {load_average()}; {args.duration:g} s per point, Poisson; "
          f"reference server: {args.service_ms:g} ms service, {args.workers} workers")
    print("| target (req/s) | tool | late sends > 1 ms (%) | late, origin fitted (%) | "
          "achieved (req/s) | p99 (ms) | client CPU per request (ms) | arrivals the server "
          "logged: KS D vs Exp (1 % critical) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    best = {t: 0.0 for t in tools}
    alive = set(tools)
    with reference_server(args.service_ms, args.workers) as server:
        for rate in rates:
            for tool in tools:
                if tool not in alive:
                    continue
                server.clear_log()
                r = one(tool, server.infer_url, rate, args.duration, args.seed)
                ks = server_ks(server.log()["arrival_ns"], rate)
                if "error" in r:
                    print(f"| {rate:g} | {tool} | error: {r['error']} | | | | | |", flush=True)
                    alive.discard(tool)
                    continue
                extra = f" ({r['loadgen_result']})" if "loadgen_result" in r else ""
                print(f"| {rate:g} | {tool}{extra} | {_num(r['late_pct'], 2)} | "
                      f"{_num(r.get('late_fitted_pct'), 2)} | {_num(r['achieved_rps'], 1)} | "
                      f"{_num(r['p99_ms'], 2)} | {_num(r['cpu_ms_per_request'], 3)} | {ks} |",
                      flush=True)
                if r["late_pct"] <= 1.0 and r["achieved_rps"] >= 0.95 * rate:
                    best[tool] = rate
    print(f"load average after: {load_average()}")
    print("highest sustained rate (<= 1 % late, >= 95 % of the target achieved): "
          + ", ".join(f"{t} {best[t]:g} req/s" for t in tools))


if __name__ == "__main__":
    main()
