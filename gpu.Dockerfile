# syntax=docker/dockerfile:1.7
# marsbench images, one target each (docker-compose.yml builds them all from this file):
#   docker build -f gpu.Dockerfile --target gpu -t marsbench:gpu .     # CUDA 13.0 + torch 2.14.1: the encoder
#   docker build -f gpu.Dockerfile --target cpu -t marsbench:cpu .     # CPU torch: the CLI, an encoder on CPU
#   docker build -f gpu.Dockerfile --target indexer -t marsbench:indexer .      # no torch
#   docker build -f gpu.Dockerfile --target evaluator -t marsbench:evaluator .  # no torch
# `gpu` and `cpu` hold every member of the workspace and run any service
# (uvicorn --factory marsbench.encoder.app:create_app --host 0.0.0.0 --port 8001; indexer 8002,
# evaluator 8003, trainer 8004: marsbench.training.app), `marsbench benchmark ...`, or by default
# `marsbench serve` (all of them in one process). `indexer` and `evaluator` hold only their own distribution and the members it needs
# (marsbench-wire, marsbench-common, marsbench-client), no torch, and run that service.
#
# Each target: a build stage makes /opt/venv (third-party dependencies first, read from the members'
# pyproject.toml by docker/requirements.py and pinned by docker/constraints.txt, then the members'
# source, so a code change rebuilds only the last layer of the images that hold it); the final
# stage copies the venv onto a clean base with no compiler, no pip cache (BuildKit cache mounts)
# and no apt lists, and runs as the unprivileged user `marsbench` (uid 10001). Writable places,
# owned by that user:
#   /var/lib/marsbench  MARSBENCH_DATA_DIR: job state, run records (the embedded store when alone)
#   /cache/huggingface  HF_HOME: hub weights
#   /results            what `marsbench benchmark --out /results` writes

# torch==2.14.1 on PyPI is built for CUDA 13.0 (update 2 runtime, cuDNN 9): the matching runtime base.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04
ARG PYTHON_IMAGE=python:3.12.12-slim-trixie
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# ---------------------------------------------------------------------------------------------
# The workspace's members, as the build stages copy them: first their manifests alone (what the
# dependency layers read), then their source. A stage copies only the members it installs, and
# a copy's cache key is the content it takes, so an encoder change leaves the slim images cached.
FROM scratch AS manifests
COPY libs/wire/pyproject.toml /libs/wire/
COPY libs/common/pyproject.toml /libs/common/
COPY services/encoder/pyproject.toml /services/encoder/
COPY services/indexer/pyproject.toml /services/indexer/
COPY services/evaluator/pyproject.toml /services/evaluator/
COPY training/pyproject.toml /training/
COPY clients/python/pyproject.toml /clients/python/
COPY clients/cli/pyproject.toml /clients/cli/

FROM scratch AS sources
COPY libs/wire/src /libs/wire/src
COPY libs/common/src /libs/common/src
COPY services/encoder/src /services/encoder/src
COPY services/indexer/src /services/indexer/src
COPY services/evaluator/src /services/evaluator/src
COPY training/src /training/src
COPY clients/python/src /clients/python/src
COPY clients/cli/src /clients/cli/src

# ---------------------------------------------------------------------------------------------
# An empty venv on the slim Python base, with the pins and the requirements script: the start
# of every build on that base.
FROM ${PYTHON_IMAGE} AS slim-venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
COPY docker/constraints.txt docker/requirements.py ./

# Indexer build: marsbench-indexer and the members it needs (wire, common, and the client its
# adapters call the other services with); no torch.
FROM slim-venv AS indexer-build
COPY --from=manifests /libs/wire libs/wire
COPY --from=manifests /libs/common libs/common
COPY --from=manifests /clients/python clients/python
COPY --from=manifests /services/indexer services/indexer
RUN --mount=type=cache,target=/root/.cache/pip \
    python requirements.py libs/wire libs/common clients/python services/indexer > requirements.txt \
    && pip install --constraint constraints.txt --requirement requirements.txt
COPY --from=sources /libs/wire libs/wire
COPY --from=sources /libs/common libs/common
COPY --from=sources /clients/python clients/python
COPY --from=sources /services/indexer services/indexer
# Non-editable, like `pip install ./DIR` (the `./` makes each a path: pip looks a bare `training` up
# on PyPI); the dependencies are in place already, as pip check confirms.
# Then the app must import, and torch must not.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps ./libs/wire ./libs/common ./clients/python ./services/indexer \
    && pip check \
    && python -c "import marsbench.indexer.app" \
    && ! python -c "import torch" 2> /dev/null

# Evaluator build: marsbench-evaluator and the members it needs (wire, common, and the client its
# adapters call the other services with); no torch.
FROM slim-venv AS evaluator-build
COPY --from=manifests /libs/wire libs/wire
COPY --from=manifests /libs/common libs/common
COPY --from=manifests /clients/python clients/python
COPY --from=manifests /services/evaluator services/evaluator
RUN --mount=type=cache,target=/root/.cache/pip \
    python requirements.py libs/wire libs/common clients/python services/evaluator > requirements.txt \
    && pip install --constraint constraints.txt --requirement requirements.txt
COPY --from=sources /libs/wire libs/wire
COPY --from=sources /libs/common libs/common
COPY --from=sources /clients/python clients/python
COPY --from=sources /services/evaluator services/evaluator
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps ./libs/wire ./libs/common ./clients/python ./services/evaluator \
    && pip check \
    && python -c "import marsbench.evaluator.app" \
    && ! python -c "import torch" 2> /dev/null

# CPU build: every member, CPU torch wheels.
FROM slim-venv AS cpu-build
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ARG TORCH_CPU_INDEX
# The CPU index serves torch+cpu; PyPI the rest. The `+cpu` local versions keep CUDA wheels out.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --constraint constraints.txt \
        --index-url "${TORCH_CPU_INDEX}" --extra-index-url https://pypi.org/simple \
        "torch==${TORCH_VERSION}+cpu" "torchvision==${TORCHVISION_VERSION}+cpu"
COPY --from=manifests / ./
# Every runtime dependency, at the tested versions, before any source is copied.
RUN --mount=type=cache,target=/root/.cache/pip \
    python requirements.py libs/wire libs/common services/encoder services/indexer services/evaluator \
        training clients/python clients/cli > requirements.txt \
    && pip install --constraint constraints.txt --requirement requirements.txt
COPY --from=sources / ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps ./libs/wire ./libs/common ./services/encoder ./services/indexer \
        ./services/evaluator ./training ./clients/python ./clients/cli \
    && pip check \
    && marsbench --help > /dev/null

# ---------------------------------------------------------------------------------------------
# The runtime every slim-based image starts from: the user, its writable places, the probe.
FROM ${PYTHON_IMAGE} AS slim-runtime
RUN groupadd --system --gid 10001 marsbench \
    && useradd --system --uid 10001 --gid marsbench --create-home --home-dir /home/marsbench \
        --shell /usr/sbin/nologin marsbench \
    && mkdir -p /var/lib/marsbench /cache/huggingface /results \
    && chown marsbench:marsbench /var/lib/marsbench /cache/huggingface /results
COPY --chmod=755 docker/healthcheck.py /usr/local/bin/marsbench-healthcheck
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/cache/huggingface \
    MARSBENCH_DATA_DIR=/var/lib/marsbench
USER 10001:10001
WORKDIR /home/marsbench
# MARSBENCH_PORT names the port probed (each image sets its own; compose sets it per service).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["marsbench-healthcheck"]

# Indexer image: the indexer service alone (compose's `indexer`).
FROM slim-runtime AS indexer
COPY --from=indexer-build /opt/venv /opt/venv
ENV MARSBENCH_PORT=8002
EXPOSE 8002
CMD ["uvicorn", "marsbench.indexer.app:create_app", "--factory", "--host=0.0.0.0", "--port=8002"]

# Evaluator image: the evaluator service alone (compose's `evaluator`).
FROM slim-runtime AS evaluator
COPY --from=evaluator-build /opt/venv /opt/venv
ENV MARSBENCH_PORT=8003
EXPOSE 8003
CMD ["uvicorn", "marsbench.evaluator.app:create_app", "--factory", "--host=0.0.0.0", "--port=8003"]

# CPU image: the benchmark CLI and every service (an encoder on CPU, for small models).
FROM slim-runtime AS cpu
COPY --from=cpu-build /opt/venv /opt/venv
# `marsbench serve`: the encoder's port is the one probed.
ENV MARSBENCH_PORT=8001
EXPOSE 8001 8002 8003 8004
CMD ["marsbench", "serve", "--host", "0.0.0.0"]

# ---------------------------------------------------------------------------------------------
# GPU build: the venv on the CUDA runtime base (same base as the image, so the venv's python is
# the same /usr/bin/python3.12). All wheels are binary: no compiler is installed.
FROM ${CUDA_IMAGE} AS gpu-build
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
# Ubuntu's own python3.12 (security updates come with the base tag); pinning apt versions would
# break the build whenever the archive moves on, so they are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.12 -m venv /opt/venv
WORKDIR /src
COPY docker/constraints.txt docker/requirements.py ./
# PyPI's torch 2.14.1 is the CUDA 13.0 build; cuDNN, cuBLAS, NCCL come as its pinned nvidia-* wheels.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --constraint constraints.txt "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
COPY --from=manifests / ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python requirements.py libs/wire libs/common services/encoder services/indexer services/evaluator \
        training clients/python clients/cli > requirements.txt \
    && pip install --constraint constraints.txt --requirement requirements.txt
COPY --from=sources / ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps ./libs/wire ./libs/common ./services/encoder ./services/indexer \
        ./services/evaluator ./training ./clients/python ./clients/cli \
    && pip check \
    && marsbench --help > /dev/null

# ---------------------------------------------------------------------------------------------
# GPU image (the default target): the encoder on a CUDA GPU; runs everything else too.
FROM ${CUDA_IMAGE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive
# Only the interpreter (no -venv, no -dev, no compiler). Unpinned apt versions: see gpu-build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 marsbench \
    && useradd --system --uid 10001 --gid marsbench --create-home --home-dir /home/marsbench \
        --shell /usr/sbin/nologin marsbench \
    && mkdir -p /var/lib/marsbench /cache/huggingface /results \
    && chown marsbench:marsbench /var/lib/marsbench /cache/huggingface /results
COPY --from=gpu-build /opt/venv /opt/venv
COPY --chmod=755 docker/healthcheck.py /usr/local/bin/marsbench-healthcheck
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/cache/huggingface \
    MARSBENCH_DATA_DIR=/var/lib/marsbench \
    MARSBENCH_PORT=8001
USER 10001:10001
WORKDIR /home/marsbench
EXPOSE 8001 8002 8003 8004
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["marsbench-healthcheck"]
CMD ["marsbench", "serve", "--host", "0.0.0.0"]
