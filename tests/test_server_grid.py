"""The spec's server section: validation with field-named errors, and its exact expansion
into labelled server configurations."""

from __future__ import annotations

import json

import pytest

from inferbench.backends.base import ServerConfig
from inferbench.errors import InferBenchError
from inferbench.paths import RunDir
from inferbench.server_grid import (
    pick,
    resolve_config,
    resolve_configs,
    server_config,
    server_configs,
)
from inferbench.spec import example_spec, parse_spec

ROOT_EXAMPLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "examples"


def spec_with(server: dict | None) -> dict:
    data = example_spec().model_dump(mode="json")
    if server is None:
        del data["server"]
    else:
        data["server"] = server
    return data


def labels(server: dict | None) -> list[str]:
    return [c.label for c in server_configs(parse_spec(spec_with(server)))]


def error_of(server: dict, **spec_fields) -> str:
    with pytest.raises(InferBenchError) as info:
        parse_spec({**spec_with(server), **spec_fields})
    return str(info.value)


def test_no_server_section_is_one_config_as_before():
    configs = server_configs(parse_spec(spec_with(None)))
    assert [(c.index, c.label, c.config) for c in configs] == [(0, "db=off,inst=1",
                                                                 ServerConfig())]
    demo = json.loads((ROOT_EXAMPLES / "demo.json").read_text())
    spec = parse_spec(demo)
    assert [c.label for c in server_configs(spec)] == ["db=off,inst=1"]
    # The server section at its default leaves the spec hash of older specs unchanged.
    assert spec.spec_hash() == parse_spec({**demo, "server": {}}).spec_hash()
    assert spec.spec_hash() != parse_spec(
        {**demo, "server": {"instance_count": 2}}).spec_hash()


def test_grid_over_delay_and_instances_in_list_order():
    assert labels({"dynamic_batching": True, "max_queue_delay_us": [0, 500, 2000],
                   "instance_count": [1, 2]}) == [
        "db=on,delay=0us,inst=1", "db=on,delay=0us,inst=2",
        "db=on,delay=500us,inst=1", "db=on,delay=500us,inst=2",
        "db=on,delay=2000us,inst=1", "db=on,delay=2000us,inst=2"]


def test_batching_off_collapses_the_delays_it_ignores():
    configs = server_configs(parse_spec(spec_with(
        {"dynamic_batching": [False, True], "max_queue_delay_us": [100, 1000]})))
    assert [c.label for c in configs] == ["db=off,inst=1", "db=on,delay=100us,inst=1",
                                          "db=on,delay=1000us,inst=1"]
    assert configs[2].config == ServerConfig(dynamic_batching=True, max_queue_delay_us=1000)
    assert configs[2].knobs() == {"dynamic_batching": True, "max_queue_delay_us": 1000,
                                  "preferred_batch_sizes": [], "instance_count": 1,
                                  "openvino_precision": "f32"}


def test_preferred_sizes_one_setting_or_a_sweep():
    assert labels({"dynamic_batching": True, "preferred_batch_sizes": [8, 4]}) == [
        "db=on,delay=0us,pref=4+8,inst=1"]
    assert labels({"dynamic_batching": True, "preferred_batch_sizes": [[], [4, 8]],
                   "max_queue_delay_us": 250}) == [
        "db=on,delay=250us,inst=1", "db=on,delay=250us,pref=4+8,inst=1"]


def test_lookup_by_index_and_a_bad_index():
    spec = parse_spec(spec_with({"instance_count": [1, 2]}))
    assert server_config(spec, 1).config == ServerConfig(instance_count=2)
    with pytest.raises(InferBenchError, match=r"configuration 2 does not exist.*0\.\.1"):
        server_config(spec, 2)


def test_a_configuration_resolves_once_with_its_files(tmp_path):
    """What serve, load, stop and collect are handed: the configuration and where its
    files are, in the run directory layout the stages have always used."""
    spec = parse_spec(spec_with({"instance_count": [1, 2]}))
    run_dir = RunDir("run:1", tmp_path)
    every = resolve_configs(spec, run_dir, "onnxruntime")
    assert [(r.platform, r.index, r.label) for r in every] == [
        ("onnxruntime", 0, "db=off,inst=1"), ("onnxruntime", 1, "db=off,inst=2")]
    second = every[1]
    assert second.server == ServerConfig(instance_count=2)
    assert second.knobs() == server_configs(spec)[1].knobs()
    files = second.files
    assert files.dir == tmp_path / "run=3a1" / "platforms" / "onnxruntime" / "config-1"
    assert files.dir.is_dir()
    assert files.endpoint == run_dir.endpoint_file("onnxruntime", 1) == files.dir / "endpoint.json"
    assert files.load == run_dir.load_file("onnxruntime", 1) == files.dir / "load.json"
    assert files.samples == files.dir / "samples.json"
    assert files.point_records(3) == files.dir / "points" / "3.npz"
    assert resolve_config(spec, run_dir, "onnxruntime", 1) == second
    assert pick(every, 0) is every[0]
    for bad in (2, -1):
        with pytest.raises(InferBenchError, match=r"does not exist.*db=off,inst=2.*0\.\.1"):
            pick(every, bad)
        with pytest.raises(InferBenchError, match=r"does not exist"):
            resolve_config(spec, run_dir, "onnxruntime", bad)


@pytest.mark.parametrize(("server", "expected"), [
    ({"max_queue_delay_us": -1}, "server.max_queue_delay_us"),
    ({"max_queue_delay_us": [0, 20_000_000], "dynamic_batching": True},
     "server.max_queue_delay_us"),
    ({"instance_count": [1, 0]}, "server.instance_count"),
    ({"instance_count": [2, 2]}, "listed twice"),
    ({"instance_count": []}, "empty list sweeps nothing"),
    ({"dynamic_batching": True, "preferred_batch_sizes": [4, 4]}, "distinct"),
    ({"max_queue_delay_us": 500}, "max_queue_delay_us 500 only apply with dynamic batching"),
    ({"preferred_batch_sizes": [4]}, "fix: set dynamic_batching to true"),
    ({"dynamic_batching": True, "preferred_batch_sizes": [16]},
     "exceed the server's max batch size 8"),
    ({"dynamic_batching": True, "max_batch_size": 4}, "server.max_batch_size 4 is below"),
    ({"instance_cnt": 2}, "unknown key 'instance_cnt' in server"),
])
def test_bad_server_values_name_the_field(server, expected):
    assert expected in error_of(server)


def test_a_grid_too_large_says_how_to_raise_the_cap():
    server = {"dynamic_batching": True, "max_queue_delay_us": [0, 100, 200, 400, 800, 1600],
              "instance_count": [1, 2, 3]}
    msg = error_of(server)
    assert "server" in msg and "18 server configurations" in msg
    assert "raise server.max_configs to 18" in msg
    assert len(labels({**server, "max_configs": 18})) == 18


def test_server_max_batch_size_defaults_to_the_largest_client_batch():
    assert parse_spec(spec_with(None)).server_max_batch_size == 8
    spec = parse_spec({**spec_with({"dynamic_batching": True, "max_batch_size": 16,
                                    "preferred_batch_sizes": [16]}), "batch_sizes": [1]})
    assert spec.server_max_batch_size == 16
