"""serve: start one platform's server under one server configuration (batching,
instances), wait until its model is ready, time the cold start.

The endpoint file is written as soon as the process exists, so the teardown task can stop
the server even if readiness never comes. `stop` is that teardown.

`run` and `stop` are the stage entry points (platform and configuration index); they resolve
the configuration once and hand the `ResolvedConfig` to `start` and `stop_servers`, which the
measure stage calls directly with the configuration it resolved itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NotRequired, TypedDict

from inferbench import containers, cpu_pinning, paths
from inferbench.backends import get_backend
from inferbench.backends.base import LaunchPlan, ServeContext, ServerProcessing
from inferbench.backends.process import (
    exit_description,
    process_started_at,
    spawn,
    stop_group,
    tagged_leaders,
    wait_ready,
)
from inferbench.errors import InferBenchError
from inferbench.gpu_sharing import Sharing, check_mps_available, mps_env, start_mps, stop_mps
from inferbench.load.sequence_lengths import free_sequence_inputs
from inferbench.netutil import free_port
from inferbench.platforms import gpu_index
from inferbench.processing.client import tokenizer_file
from inferbench.server_grid import ResolvedConfig, resolve_config, resolve_configs
from inferbench.spec import ProcessingSide, Transport
from inferbench.stages.common import (
    Endpoint,
    StageContext,
    read_endpoint,
    read_json,
    run_signature,
    write_json,
)

READY_TIMEOUT_S = 180.0


def serve_context(ctx: StageContext, resolved: ResolvedConfig) -> ServeContext:
    """What the backend needs to start this configuration's server: its knobs and files,
    the converted model, and fresh ports."""
    platform = resolved.platform
    backend = get_backend(platform)
    conversions = read_json(ctx.run_dir.model_dir / "conversions.json") or {}
    converted = conversions.get(backend.model_format.value)
    if not converted or not converted["passed"]:
        raise InferBenchError(
            f"platform {platform!r} needs a checked {backend.model_format.value!r} model, but "
            f"the convert stage did not produce one for run {ctx.run_id!r}")
    signature = run_signature(ctx)
    inputs = signature.inputs
    if ctx.spec.sends_free_sequence:  # requests come at several lengths
        inputs = free_sequence_inputs(inputs)
    return ServeContext(
        model_name=ctx.spec.model.name, model_path=Path(converted["artifact_path"]),
        inputs=inputs, num_outputs=signature.num_outputs,
        workdir=resolved.files.dir, http_port=free_port(),
        grpc_port=free_port(), metrics_port=free_port(),
        max_batch_size=ctx.spec.server_max_batch_size,
        server=resolved.server, device=ctx.spec.hardware,
        processing=server_processing(ctx, inputs), cpus=server_cpus(ctx))


def server_cpus(ctx: StageContext) -> tuple[int, ...]:
    """The CPUs the spec keeps the server on (resources.server_cpus), checked against this
    worker; () where it may run anywhere."""
    listed = ctx.spec.resources.server_cpus
    return () if listed is None else tuple(sorted(cpu_pinning.split(listed)[0]))


def server_processing(ctx: StageContext, inputs) -> ServerProcessing:
    """What the spec's pipeline asks the server to do around the model (nothing when it
    runs on the client, or there is none)."""
    pipeline = ctx.spec.pipeline
    if pipeline is None or not pipeline.on_server:
        return ServerProcessing()
    preprocess = None
    if pipeline.preprocess is ProcessingSide.SERVER:
        if ctx.spec.pipeline_input == "image":
            _, height, width = inputs[0].shape
            preprocess = f"image:{height},{width}"
        else:
            tokenizer = tokenizer_file(ctx.run_dir.path, inputs, ctx.spec.model.seed)
            preprocess = f"text:{tokenizer}:{inputs[0].shape[0]}"
    postprocess = (f"topk:{pipeline.top_k}" if pipeline.postprocess is ProcessingSide.SERVER
                   else None)
    return ServerProcessing(preprocess, postprocess)


def run(ctx: StageContext, platform: str, config: int = 0) -> Endpoint:
    """The serve stage: start configuration `config` of `platform`."""
    return start(ctx, resolve_config(ctx.spec, ctx.run_dir, platform, config))


def start(ctx: StageContext, resolved: ResolvedConfig) -> Endpoint:
    """Start one configuration's server and wait until its model is ready.

    An earlier attempt at this configuration (a retried or cleared task) is first stopped,
    and its files set aside under attempts/: one server at a time, nothing measured lost."""
    platform = resolved.platform
    stop_servers(ctx, platform, [resolved])
    earlier = resolved.files.set_aside(resolved.files.attempt_files)
    if earlier is not None:
        print(f"an earlier attempt's files are kept in {earlier}", flush=True)
    backend = get_backend(platform)
    sctx = serve_context(ctx, resolved)
    backend.prepare(sctx)
    plan = backend.launch_plan(sctx)
    log_path = resolved.files.server_log
    endpoint_file = resolved.files.endpoint
    base_url = f"http://127.0.0.1:{sctx.http_port}"
    endpoint: Endpoint = {
        "platform": platform, "url": base_url, "model_name": sctx.model_name,
        "protocol": backend.protocol, "log": str(log_path),
        "config": resolved.index, "config_label": resolved.label,
        "platform_version": backend.version_on(sctx.device), "status": "starting",
        "runtime": containers.runtime_from_env()}
    endpoint["metrics_url"] = f"http://127.0.0.1:{sctx.metrics_port}"
    if Transport.GRPC in backend.descriptor.transports:
        endpoint["grpc_url"] = f"grpc://127.0.0.1:{sctx.grpc_port}"
    endpoint["ready_path"] = backend.ready_path(sctx)
    if sctx.cpus:
        endpoint["server_cpus"] = cpu_pinning.format_cpu_list(sctx.cpus)
    ready_url = base_url + endpoint["ready_path"]
    started = time.perf_counter()
    endpoint["started_at"] = time.time()
    try:
        if ctx.spec.sharing is Sharing.MPS:
            check_mps_available(endpoint["runtime"])
        if endpoint["runtime"] == "docker":
            _start_container(ctx, resolved, plan, endpoint, ready_url)
        elif plan.image is not None:
            raise InferBenchError(
                f"platform {platform!r} is configured to serve from the image {plan.image!r}, "
                "which needs the docker runtime; fix: set INFERBENCH_RUNTIME=docker, or unset "
                "the platform's image setting to serve locally")
        else:
            endpoint["server_tag"] = server_tag(ctx, resolved)
            if ctx.spec.sharing is Sharing.MPS:
                env = mps_env(endpoint["server_tag"], resolved.files.server_log.parent / "mps")
                endpoint["sharing"] = Sharing.MPS.value
                endpoint["mps"] = env  # before the start: a stop then quits it whatever happens
                write_json(endpoint_file, endpoint)
                endpoint["mps_started_at"] = start_mps(env, endpoint["runtime"])["started_at"]
                plan.env.update(env)  # the server's CUDA processes use this daemon only
            write_json(endpoint_file, endpoint)  # before the spawn: see _stop_server
            if sctx.cpus:
                plan.argv = cpu_pinning.taskset_argv(sctx.cpus, plan.argv)
            process = spawn(plan, log_path, endpoint["server_tag"])
            endpoint["pid"] = process.pid
            # With its start time, a stop never signals another process that got the pid.
            endpoint["pid_started_at"] = process_started_at(process.pid)
            write_json(endpoint_file, endpoint)
            wait_ready(ready_url, process, READY_TIMEOUT_S, log_path)
        endpoint.update(cold_start_s=time.perf_counter() - started, ready_at=time.time())
        # Asked of the running server: the analysis labels, prices and meters by it.
        serving = backend.serving_device(sctx, base_url)
        endpoint["device"] = serving.device
        if serving.accelerator:
            endpoint["accelerator"] = serving.accelerator
        _check_device(platform, ctx.spec.hardware, endpoint["device"])
    except BaseException as exc:  # a SIGTERM while it starts, too: the new server goes
        _stop_server(ctx, resolved, endpoint)
        endpoint.update(status="failed", error=str(exc) or type(exc).__name__)
        write_json(endpoint_file, endpoint)
        raise
    endpoint.update(status="ready")
    write_json(endpoint_file, endpoint)
    return endpoint


def _check_device(platform: str, asked: str, runs_on: str) -> None:
    """A server that runs the model elsewhere than the spec's hardware (a silent fall-back
    to the CPU) fails its deployment: its numbers would describe another device."""
    if gpu_index(runs_on) != gpu_index(asked):  # None on the CPU; "gpu" is gpu:0
        raise InferBenchError(f"platform {platform!r} was asked to run the model on {asked} "
                              f"(hardware) but its server runs it on {runs_on}; fix: see the "
                              "server's log for why, or set hardware to where it can run")


def server_tag(ctx: StageContext, resolved: ResolvedConfig) -> str:
    """What a local server's environment carries (SERVER_TAG_ENV): unique per home, run,
    platform and configuration."""
    return f"{paths.home()}|{ctx.run_id}|{resolved.platform}|{resolved.index}"


def _start_container(ctx: StageContext, resolved: ResolvedConfig, plan: LaunchPlan,
                     endpoint: Endpoint, ready_url: str) -> None:
    """The docker runtime: the server runs in its own container from the stage image (the
    launch plan's argv is the same as a local process's, in the same image layout)."""
    from inferbench.netutil import poll_http_ok

    client = containers.client()
    resources = ctx.spec.resources
    spec = containers.ContainerSpec(
        image=plan.image or containers.image_from_env(), command=plan.argv, entrypoint=[],
        run_id=ctx.run_id, role=containers.server_role(resolved.platform, resolved.index),
        home=paths.home(),
        environment=plan.env,
        limits=containers.Limits(cpus=resources.cpus, memory_gb=resources.memory_gb,
                                 cpuset=endpoint.get("server_cpus")))
    kwargs = spec.create_kwargs()
    if plan.cwd is not None:
        kwargs["working_dir"] = str(plan.cwd)
    # Before the start: a stage killed before it records the id still leaves an endpoint
    # whose teardown finds the container by its labels (_stop_server).
    write_json(resolved.files.endpoint, endpoint)
    container = client.containers.run(**kwargs)
    endpoint["container_id"] = container.id
    write_json(resolved.files.endpoint, endpoint)

    def still_running() -> None:
        container.reload()
        if container.status in ("exited", "dead"):
            logs = container.logs(tail=20).decode(errors="replace")
            raise InferBenchError(f"server container exited before it was ready; last log "
                                  f"lines:\n{logs}")

    if not poll_http_ok(ready_url, READY_TIMEOUT_S, check=still_running):
        raise InferBenchError(f"server container not ready at {ready_url} after "
                              f"{READY_TIMEOUT_S:.0f} s")


def server_exit(endpoint: Endpoint) -> str | None:
    """None while the configuration's server runs; else how it ended, as a phrase for the
    load stage's error ("was killed by signal 9 (SIGKILL)", "exited with code 137 (killed
    for memory)")."""
    if "pid" in endpoint:
        return exit_description(int(endpoint["pid"]))
    if not endpoint.get("container_id"):
        return None
    from docker.errors import NotFound

    try:
        container = containers.client().containers.get(endpoint["container_id"])
    except NotFound:
        return "is gone (its container was removed)"
    except InferBenchError:
        return None  # a stage without the Docker socket (load alone) cannot tell
    state = container.attrs.get("State") or {}
    if state.get("Running") or container.status in ("created", "running", "restarting"):
        return None
    memory = " (killed for memory)" if state.get("OOMKilled") else ""
    return f"exited with code {state.get('ExitCode')}{memory} (its container {container.status})"


def _stop_server(ctx: StageContext, resolved: ResolvedConfig, endpoint: Endpoint) -> bool:
    """Stop whatever serves one configuration, then the MPS daemon started for it; True if
    the server was still running."""
    try:
        return _stop_serving(ctx, resolved, endpoint)
    finally:
        if endpoint.get("mps"):
            stop_mps(endpoint["mps"])


def _stop_serving(ctx: StageContext, resolved: ResolvedConfig, endpoint: Endpoint) -> bool:
    if "pid" in endpoint:
        if "stopped_at" in endpoint:
            return False  # stopped before: its pid may be another process's by now
        return stop_group(int(endpoint["pid"]), endpoint.get("pid_started_at"))
    if "server_tag" in endpoint:
        # The stage died between the spawn and recording the pid: find the server by the
        # tag in its environment (no pid to be reused, so this is safe to repeat).
        return any([stop_group(pid) for pid in tagged_leaders(endpoint["server_tag"])])
    if endpoint.get("runtime") != "docker":
        return False
    client = containers.client()
    was_running = False
    # By label, not only by the recorded id: a serve task killed between starting the
    # container and writing its id still leaves nothing behind.
    for container in containers.run_containers(client, ctx.run_id):
        if container.labels.get(containers.LABEL_ROLE) != containers.server_role(
                resolved.platform, resolved.index):
            continue
        was_running = was_running or container.status == "running"
        with open(endpoint["log"], "ab") as log:  # keep the server's log with the run
            log.write(container.logs())
        containers.remove(container)
    return was_running


class StopResult(TypedDict):
    """What `stop` found: per configuration index that had been started, whether its
    server was still running."""

    platform: str
    stopped: bool
    configs: dict[int, bool]
    reason: NotRequired[str]   # "never started": no configuration had an endpoint


def stop(ctx: StageContext, platform: str, config: int | None = None) -> StopResult:
    """Stop the server of one configuration, or (config None: the teardown task) of every
    configuration of this platform that may still run."""
    resolved = [r for r in resolve_configs(ctx.spec, ctx.run_dir, platform)
                if config is None or r.index == config]
    return stop_servers(ctx, platform, resolved)


def stop_servers(ctx: StageContext, platform: str, configs: list[ResolvedConfig]
                 ) -> StopResult:
    """Stop the servers of these configurations of `platform`, where one was started."""
    stopped: dict[int, bool] = {}
    for resolved in configs:
        endpoint = read_endpoint(resolved.files.endpoint)
        if endpoint is None:
            continue  # never started
        stopped[resolved.index] = _stop_server(ctx, resolved, endpoint)
        endpoint.setdefault("stopped_at", time.time())
        try:
            write_json(resolved.files.endpoint, endpoint)
        except (OSError, InferBenchError) as exc:
            # The server is stopped; only the note of it is lost (a full disk): a later
            # stop checks the recorded pid's start time, so it cannot signal a stranger.
            print(f"could not record that the server stopped: {exc}", flush=True)
    result: StopResult = {"platform": platform, "stopped": any(stopped.values()),
                          "configs": stopped}
    if not stopped:
        result["reason"] = "never started"
    return result
