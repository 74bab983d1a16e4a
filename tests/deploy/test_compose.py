"""docker-compose.yml: valid for Docker Compose itself, and shaped as the deployment needs.

Docker Compose's own `config` command loads, validates (against the compose specification),
merges and interpolates the file, with `.env` a copy of `.env.example` and with no `.env` at all;
the assertions then read the resolved model.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest

from tests.deploy.conftest import COMPOSE_FILE, PROFILES, EnvEntry, resolved, run_compose
from tests.deploy.dockerfile import dockerfile

Config = dict[str, object]

# Services that run until stopped; `benchmark` is the one-shot job.
LONG_RUNNING = {"qdrant", "encoder", "indexer", "evaluator"}
CLUSTER_PEERS = {"qdrant-peer-2", "qdrant-peer-3"}
TRAINING = {"trainer"}  # the `training` profile: long-running too, not started by default
ONE_SHOT = {"benchmark"}
# The only ports a user needs: job progress (indexer), runs / interactive search (evaluator) and
# training jobs (trainer, with its profile).
PUBLISHED = {"indexer": 8002, "evaluator": 8003, "trainer": 8004}
TRAIN_DIR = "/var/lib/marsbench/training"
CLUSTER_OPTIONS = ("QDRANT_SHARD_NUMBER", "QDRANT_REPLICATION_FACTOR", "QDRANT_WRITE_CONSISTENCY_FACTOR")


def services(config: Config) -> dict[str, dict[str, object]]:
    return config["services"]  # type: ignore[return-value]


def environment(service: dict[str, object]) -> dict[str, str | None]:
    return service.get("environment") or {}  # type: ignore[return-value]


@pytest.mark.parametrize("profiles", [(), ("cluster",), ("training",), PROFILES])
def test_compose_config_is_valid(compose_project: Path, profiles: tuple[str, ...]) -> None:
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    done = run_compose(compose_project, *args, "config", "--quiet")
    assert done.returncode == 0, done.stderr
    # No "variable is not set" warnings: .env.example documents everything the file reads.
    assert "not set" not in done.stderr, done.stderr


def test_services_per_profile(
    config: Config, cluster_config: Config, training_config: Config, full_config: Config
) -> None:
    assert set(services(config)) == LONG_RUNNING | ONE_SHOT
    assert set(services(cluster_config)) == LONG_RUNNING | ONE_SHOT | CLUSTER_PEERS
    assert set(services(training_config)) == LONG_RUNNING | ONE_SHOT | TRAINING
    assert set(services(full_config)) == LONG_RUNNING | ONE_SHOT | CLUSTER_PEERS | TRAINING


def test_every_long_running_service_has_a_healthcheck(full_config: Config) -> None:
    for name, service in services(full_config).items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} is a one-shot job"
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", name


def test_dependencies_exist_and_wait_until_healthy(full_config: Config, config: Config) -> None:
    every = services(full_config)
    for name, service in every.items():
        for target, dependency in (service.get("depends_on") or {}).items():
            assert target in every, f"{name} depends on undefined service {target}"
            assert dependency["condition"] == "service_healthy", f"{name} -> {target}"
            assert every[target].get("healthcheck", {}).get("test"), f"{target} cannot become healthy"
            # Only the cluster's extra peers may be absent (the default profile does not run them).
            assert dependency.get("required", True) == (target not in CLUSTER_PEERS), f"{name} -> {target}"
    # Without their profiles the optional peers and the trainer are simply not there.
    assert not (CLUSTER_PEERS | TRAINING) & set(services(config))


def test_start_order(full_config: Config) -> None:
    every = services(full_config)
    for name in ("indexer", "evaluator"):
        assert set(every[name]["depends_on"]) == {"qdrant", "encoder"} | CLUSTER_PEERS
    assert set(every["benchmark"]["depends_on"]) == {"indexer", "evaluator", "encoder"}
    for peer in CLUSTER_PEERS:
        assert set(every[peer]["depends_on"]) == {"qdrant"}
    # The trainer reads datasets and writes checkpoints: it waits for no other service.
    assert not every["trainer"].get("depends_on")


def test_every_variable_is_documented_in_env_example(
    env_example: dict[str, EnvEntry], bare_config: Config
) -> None:
    text = COMPOSE_FILE.read_text()
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert "$" not in re.sub(r"\$\$|\$\{[A-Za-z_][A-Za-z0-9_]*(:?-[^}]*)?\}", "", text), "bare $VAR form"
    # `KEY:` with no value passes the variable through from .env (unset when .env lacks it).
    passed_through = {
        key
        for service in services(bare_config).values()
        for key, v in environment(service).items()
        if v is None
    }
    used = interpolated | passed_through
    undocumented = used - set(env_example)
    assert not undocumented, f"used by docker-compose.yml, missing from .env.example: {sorted(undocumented)}"
    unused = set(env_example) - used
    assert not unused, f"documented in .env.example, read by nothing: {sorted(unused)}"
    for entry in env_example.values():
        assert entry.doc, f".env.example: {entry.name} has no comment saying what it is"


def test_env_example_holds_the_files_own_defaults(
    config: Config, bare_config: Config, full_config: Config
) -> None:
    """With .env a copy of .env.example, the model is the one the file's own defaults give.

    The only difference allowed: pass-through settings, unset without .env, and set in
    .env.example to the service's default (test_env_settings checks those values).
    """
    bare = services(bare_config)
    assert set(services(full_config)) == set(bare)
    for name, service in copy.deepcopy(services(full_config)).items():
        for key, value in environment(bare[name]).items():
            if value is None:
                environment(service)[key] = None
        assert service == bare[name], name
    assert full_config["volumes"] == bare_config["volumes"]
    assert full_config["networks"] == bare_config["networks"]


def test_cluster_profile_is_three_qdrant_peers(cluster_config: Config, config: Config) -> None:
    every = services(cluster_config)
    peers = {name: s for name, s in every.items() if str(s["image"]).startswith("qdrant/qdrant:")}
    assert set(peers) == {"qdrant"} | CLUSTER_PEERS
    bootstrap: list[str] = []
    uris: dict[str, str] = {}
    for name, service in peers.items():
        assert environment(service)["QDRANT__CLUSTER__ENABLED"] == "true", name
        command = list(service["command"])
        assert command[0] == "./qdrant", name
        uris[name] = command[command.index("--uri") + 1]
        assert uris[name] == f"http://{name}:6335", f"{name} must announce itself under its own name"
        if "--bootstrap" in command:
            assert command[command.index("--bootstrap") + 1] == "http://qdrant:6335", name
        else:
            bootstrap.append(name)
        # Each peer keeps its own storage.
        storage = [v["source"] for v in service["volumes"] if v["target"] == "/qdrant/storage"]
        assert len(storage) == 1, name
    assert bootstrap == ["qdrant"], "exactly one bootstrap peer, the one the services talk to"
    assert len({s["volumes"][0]["source"] for s in peers.values()}) == 3
    # The default profile runs the bootstrap peer alone.
    assert [n for n, s in services(config).items() if str(s["image"]).startswith("qdrant/")] == ["qdrant"]


def test_qdrant_image_is_official_and_pinned(full_config: Config) -> None:
    for name, service in services(full_config).items():
        image = str(service["image"])
        if image.startswith("qdrant/"):
            assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+(-unprivileged)?", image), f"{name}: {image}"


def test_indexer_and_evaluator_use_qdrant_and_encoder_by_service_name(
    config: Config, cluster_config: Config
) -> None:
    for model in (config, cluster_config):
        for name in ("indexer", "evaluator"):
            env = environment(services(model)[name])
            assert env["QDRANT_URL"] == "http://qdrant:6333"
            assert env["MARSBENCH_ENCODER_URLS"] == "http://encoder:8001"
            for option in CLUSTER_OPTIONS:
                assert env[option] == "1", f"{name}: {option}"
    bench = environment(services(config)["benchmark"])
    assert bench["MARSBENCH_INDEXER_URL"] == "http://indexer:8002"
    assert bench["MARSBENCH_EVALUATOR_URL"] == "http://evaluator:8003"
    assert bench["MARSBENCH_ENCODER_URL"] == "http://encoder:8001"


def test_encoder_reserves_a_gpu_and_can_scale(config: Config) -> None:
    encoder = services(config)["encoder"]
    devices = encoder["deploy"]["resources"]["reservations"]["devices"]
    gpus = [d for d in devices if "gpu" in d.get("capabilities", [])]
    assert len(gpus) == 1 and gpus[0]["driver"] == "nvidia"
    assert gpus[0].get("device_ids") or gpus[0].get("count"), "reserve a GPU by id or count"
    # `--scale encoder=N`: no fixed name, no host port.
    assert "container_name" not in encoder
    assert not encoder.get("ports")
    assert encoder["build"]["target"] == "gpu"
    assert environment(encoder)["MARSBENCH_ENCODER_PRELOAD"] == ""  # models to preload, from .env
    assert any(v["target"] == "/cache/huggingface" and v["type"] == "volume" for v in encoder["volumes"])
    assert encoder["healthcheck"]["test"][-1] == "/readyz", "ready only once preloaded models are loaded"


def test_no_fixed_container_names(full_config: Config) -> None:
    for name, service in services(full_config).items():
        assert "container_name" not in service, name


def test_only_intended_ports_are_published_on_localhost(full_config: Config) -> None:
    published = {}
    for name, service in services(full_config).items():
        for port in service.get("ports") or []:
            published[name] = port["target"]
            assert port["host_ip"] == "127.0.0.1", f"{name} is published beyond this host by default"
            assert str(port["published"]) == str(port["target"])
    assert published == PUBLISHED


def test_networks(full_config: Config) -> None:
    assert full_config["networks"]["backend"].get("internal") is True
    every = services(full_config)
    for name, service in every.items():
        networks = set(service["networks"])
        assert "backend" in networks, name
        # Qdrant and the benchmark job need nothing outside; published services and the encoder's
        # (and the trainer's) hub downloads need the non-internal network.
        wants_public = name in PUBLISHED or name == "encoder"
        assert ("public" in networks) == wants_public, name


def test_services_build_from_gpu_dockerfile(full_config: Config) -> None:
    targets = {}
    stages = dockerfile().stages
    for name, service in services(full_config).items():
        if "build" in service:
            assert Path(service["build"]["dockerfile"]).name == "gpu.Dockerfile", name
            targets[name] = service["build"]["target"]
            assert targets[name] in stages, f"{name}: gpu.Dockerfile has no target {targets[name]}"
            assert service["image"] == f"marsbench:{targets[name]}", name
    # The indexer and evaluator run their slim, torch-free images; the encoder and the trainer the GPU
    # one; the benchmark job the CLI's.
    assert targets == {
        "encoder": "gpu",
        "indexer": "indexer",
        "evaluator": "evaluator",
        "benchmark": "cpu",
        "trainer": "gpu",
    }


def test_slim_services_run_what_their_image_runs(config: Config) -> None:
    """Compose's command is the image's own CMD, plus the log level from .env."""
    for name in ("indexer", "evaluator"):
        command = list(services(config)[name]["command"])
        image_cmd = dockerfile().cmd(name)
        assert command[: len(image_cmd)] == image_cmd, name
        assert command[len(image_cmd) :] == ["--log-level=info"], name
        port = dockerfile().env(name)["MARSBENCH_PORT"]
        assert environment(services(config)[name])["MARSBENCH_PORT"] == port, name


def test_benchmark_job(config: Config) -> None:
    bench = services(config)["benchmark"]
    assert " ".join(bench["command"]) == "marsbench benchmark --config /config/bench.yaml --out /results"
    mounts = {v["target"]: v for v in bench["volumes"]}
    assert mounts["/config/bench.yaml"]["type"] == "bind" and mounts["/config/bench.yaml"]["read_only"]
    assert mounts["/config/bench.yaml"]["source"] == "/project/configs/paper.yaml"
    assert mounts["/results"]["type"] == "volume" and mounts["/results"]["source"] == "results"
    assert mounts["/data"]["read_only"]


def test_datasets_are_mounted_at_the_same_path_everywhere(full_config: Config) -> None:
    """The benchmark names dataset paths; the indexer and evaluator open them: same mount point."""
    for name in ("encoder", "indexer", "evaluator", "benchmark", "trainer"):
        data = [v for v in services(full_config)[name]["volumes"] if v["target"] == "/data"]
        assert len(data) == 1 and data[0]["type"] == "bind" and data[0]["read_only"], name
        assert data[0]["source"] == "/project/data", name


def test_state_lives_in_named_volumes(config: Config) -> None:
    every = services(config)
    for name in ("indexer", "evaluator"):
        named = {v["source"] for v in every[name]["volumes"] if v["type"] == "volume"}
        assert named == {f"{name}-state"}, name
    assert every["qdrant"]["volumes"][0]["source"] == "qdrant-storage"


def test_trainer_runs_the_trainer_app_on_the_encoders_image(training_config: Config) -> None:
    every = services(training_config)
    trainer, encoder = every["trainer"], every["encoder"]
    assert trainer["profiles"] == ["training"]
    assert trainer["image"] == encoder["image"] and trainer["build"] == encoder["build"]
    assert list(trainer["command"]) == [
        "uvicorn", "marsbench.training.app:create_app", "--factory", "--host=0.0.0.0", "--port=8004",
        "--log-level=info",
    ]  # fmt: skip
    env = environment(trainer)
    assert env["MARSBENCH_PORT"] == "8004"  # the port marsbench-healthcheck probes
    assert trainer["healthcheck"]["test"] == ["CMD", "marsbench-healthcheck", "/readyz"]
    # Access and confinement as the indexer's: the same key, host and dataset roots.
    indexer = environment(every["indexer"])
    shared = ("MARSBENCH_API_KEY", "MARSBENCH_REQUIRE_API_KEY", "MARSBENCH_HOST", "MARSBENCH_DATASET_ROOTS")
    for key in shared:
        assert key in env and env[key] == indexer[key], key
    # The GPU reservation of the encoder, on the GPU .env names.
    reserved = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert reserved == encoder["deploy"]["resources"]["reservations"]["devices"]
    assert reserved[0]["device_ids"] == ["0"]  # TRAINER_GPU's default
    assert "container_name" not in trainer


def test_the_encoder_serves_what_the_trainer_writes(training_config: Config) -> None:
    every = services(training_config)
    trainer, encoder = every["trainer"], every["encoder"]
    assert environment(trainer)["MARSBENCH_TRAIN_DIR"] == TRAIN_DIR
    writes = [v for v in trainer["volumes"] if TRAIN_DIR.startswith(v["target"] + "/")]
    assert len(writes) == 1 and writes[0]["type"] == "volume" and not writes[0].get("read_only")
    # The images' data dir, created owned by their user: a new volume mounted there is writable by it.
    assert writes[0]["target"] == dockerfile().env("gpu")["MARSBENCH_DATA_DIR"]
    # The encoder mounts that volume, read-only, at the same path, and lists the folder in its roots:
    # a checkpoint path the trainer reports is one the encoder accepts.
    reads = [v for v in encoder["volumes"] if v.get("source") == writes[0]["source"]]
    assert len(reads) == 1 and reads[0]["target"] == writes[0]["target"] and reads[0]["read_only"]
    roots = environment(encoder)["MARSBENCH_ENCODER_MODEL_ROOTS"] or ""
    assert roots.split(",") == ["/data", TRAIN_DIR]
    assert writes[0]["source"] in training_config["volumes"]  # type: ignore[operator]
    # The datasets, read-only; base weights from the encoder's hub cache.
    mounts = {v["target"]: v for v in trainer["volumes"]}
    assert mounts["/data"]["read_only"]
    assert mounts["/cache/huggingface"]["source"] == "hf-cache"


def test_the_trainer_folder_stays_a_model_root_whatever_env_sets(
    compose_project: Path, tmp_path: Path
) -> None:
    """MARSBENCH_ENCODER_MODEL_ROOTS in .env replaces /data, never the trainer's folder."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    env = (compose_project / ".env").read_text()
    assert "\nMARSBENCH_ENCODER_MODEL_ROOTS=/data\n" in env
    (tmp_path / ".env").write_text(env.replace("_MODEL_ROOTS=/data\n", "_MODEL_ROOTS=/models\n"))
    encoder = services(resolved(tmp_path))["encoder"]
    assert environment(encoder)["MARSBENCH_ENCODER_MODEL_ROOTS"] == f"/models,{TRAIN_DIR}"
