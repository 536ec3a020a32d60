"""The images and the cluster file: upstream defaults a real user would pull, and a compose
file that validates and refuses to start without its secrets."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import ROOT

DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))


# Each image's upstream default: what a user with a registry pulls.
UPSTREAM = {"stage": "python:3.11-slim-bookworm", "airflow": "python:3.11-slim-bookworm",
            "postgres": "postgres:16-bookworm", "redis": "redis:7-bookworm"}


def test_there_are_the_stage_and_the_cluster_images():
    assert {p.parent.name for p in DOCKERFILES} == set(UPSTREAM)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_dockerfile_builds_from_an_overridable_upstream_base(dockerfile):
    text = dockerfile.read_text()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert default and default.group(1) == UPSTREAM[dockerfile.parent.name]
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f == "${BASE_IMAGE}" for f in froms)
    if UPSTREAM[dockerfile.parent.name].startswith("python:"):
        # multi-stage: the final image copies the built environment, not the build tools
        assert len(froms) == 2 and "COPY --from=build /opt/venv /opt/venv" in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_stage_carries_the_label_that_lets_a_rebuild_prune_what_it_replaced(dockerfile):
    # scripts/build-images.sh removes untagged images by this label: a stage without it
    # would leave gigabytes behind at every rebuild.
    lines = dockerfile.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert starts
    for i in starts:
        assert lines[i + 1] == f"LABEL org.inferbench.image={dockerfile.parent.name}", lines[i]


def test_the_compose_file_builds_the_cluster_images_from_the_same_upstreams():
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]
    for name in ("postgres", "redis"):
        build = services[name]["build"]
        assert build["dockerfile"] == f"images/{name}/Dockerfile"
        assert build["args"]["BASE_IMAGE"].endswith(f":-{UPSTREAM[name]}}}")


def _compose(env_file, *args):
    return subprocess.run(["docker-compose", "--env-file", str(env_file), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.docker
def test_compose_file_validates_and_refuses_to_start_without_secrets(tmp_path, docker_client):
    # docker_client: scripts/start-docker.sh installs docker-compose with the daemon (a
    # check at collection would skip this on every fresh machine, before it ran).
    if shutil.which("docker-compose") is None:
        pytest.skip("scripts/start-docker.sh did not install docker-compose")
    example = (ROOT / ".env.example").read_text()
    refused = _compose(ROOT / ".env.example", "config", "-q")
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr
    filled = tmp_path / ".env"
    secrets = re.sub(r"^(POSTGRES_PASSWORD|AIRFLOW_ADMIN_PASSWORD|AIRFLOW_JWT_SECRET|"
                     r"AIRFLOW_FERNET_KEY|REDIS_PASSWORD)=$", r"\1=s3cret", example, flags=re.M)
    filled.write_text(secrets)
    # the results role's password is required on its own, not borrowed from the superuser
    refused = _compose(filled, "config", "-q")
    assert refused.returncode != 0 and "RESULTS_DB_PASSWORD" in refused.stderr
    filled.write_text(secrets.replace("RESULTS_DB_PASSWORD=\n", "RESULTS_DB_PASSWORD=r3sults\n"))
    config = _compose(filled, "config")
    assert config.returncode == 0, config.stderr
    import yaml

    services = yaml.safe_load(config.stdout)["services"]
    results_urls = [env[key] for env in (s.get("environment") or {} for s in services.values())
                    for key in ("INFERBENCH_DB_URL", "RESULTS_DB_URL") if key in env]
    assert len(results_urls) >= 5
    assert all("//inferbench:r3sults@" in url and "s3cret" not in url for url in results_urls)
    assert services["postgres"]["environment"]["RESULTS_DB_PASSWORD"] == "r3sults"
    assert set(services) >= {"postgres", "redis", "api-server", "scheduler", "dag-processor",
                             "triggerer", "gpu-worker-0"}
    worker = services["gpu-worker-0"]
    assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # The broker asks for its password, and every Airflow component carries it.
    assert worker["environment"]["AIRFLOW__CELERY__BROKER_URL"] == "redis://:s3cret@redis:6379/0"
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == "s3cret"
    assert "--queues gpu-worker-0" in " ".join(worker["command"] if isinstance(
        worker["command"], list) else [worker["command"]])
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
