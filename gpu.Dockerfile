# syntax=docker/dockerfile:1.7
# marsbench images. One image runs any service or the CLI:
#   uvicorn --factory marsbench.encoder.app:create_app --host 0.0.0.0 --port 8001   (indexer: 8002,
#   evaluator: 8003; each app reads its settings from the environment), `marsbench benchmark ...`,
#   or, by default, `marsbench serve` (all three in one process, embedded engine or QDRANT_URL).
#
#   docker build -f gpu.Dockerfile --target gpu -t marsbench:gpu .   # CUDA 13.0 + torch 2.14.1 (encoder)
#   docker build -f gpu.Dockerfile --target cpu -t marsbench:cpu .   # CPU torch (indexer, evaluator, CLI)
#
# Both targets: a build stage makes /opt/venv (dependencies first, pinned by docker/constraints.txt,
# then the source, so a code change rebuilds only the last layer); the final stage copies the venv
# onto a clean base with no compiler, no pip cache (BuildKit cache mounts) and no apt lists, and
# runs as the unprivileged user `marsbench` (uid 10001). Writable places, owned by that user:
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
# CPU build: the venv on the slim Python base, CPU torch wheels.
FROM ${PYTHON_IMAGE} AS cpu-build
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ARG TORCH_CPU_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
COPY docker/constraints.txt pyproject.toml ./
# The CPU index serves torch+cpu; PyPI the rest. The `+cpu` local versions keep CUDA wheels out.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --constraint constraints.txt \
        --index-url "${TORCH_CPU_INDEX}" --extra-index-url https://pypi.org/simple \
        "torch==${TORCH_VERSION}+cpu" "torchvision==${TORCHVISION_VERSION}+cpu"
# Every runtime dependency, at the tested versions, before any source is copied.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install --constraint constraints.txt --requirement requirements.txt
COPY setup.py README.md ./
COPY marsbench ./marsbench
COPY services ./services
COPY clients ./clients
# Non-editable, like `pip install .`; the dependencies are in place already.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && marsbench --help > /dev/null

# ---------------------------------------------------------------------------------------------
# CPU image: indexer, evaluator, benchmark CLI (and an encoder on CPU, for small models).
FROM ${PYTHON_IMAGE} AS cpu
RUN groupadd --system --gid 10001 marsbench \
    && useradd --system --uid 10001 --gid marsbench --create-home --home-dir /home/marsbench \
        --shell /usr/sbin/nologin marsbench \
    && mkdir -p /var/lib/marsbench /cache/huggingface /results \
    && chown marsbench:marsbench /var/lib/marsbench /cache/huggingface /results
COPY --from=cpu-build /opt/venv /opt/venv
COPY --chmod=755 docker/healthcheck.py /usr/local/bin/marsbench-healthcheck
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/cache/huggingface \
    MARSBENCH_DATA_DIR=/var/lib/marsbench \
    MARSBENCH_PORT=8001
USER 10001:10001
WORKDIR /home/marsbench
EXPOSE 8001 8002 8003
# MARSBENCH_PORT names the port probed (compose sets it per service; `marsbench serve`: the encoder).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["marsbench-healthcheck"]
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
COPY docker/constraints.txt pyproject.toml ./
# PyPI's torch 2.14.1 is the CUDA 13.0 build; cuDNN, cuBLAS, NCCL come as its pinned nvidia-* wheels.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --constraint constraints.txt "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install --constraint constraints.txt --requirement requirements.txt
COPY setup.py README.md ./
COPY marsbench ./marsbench
COPY services ./services
COPY clients ./clients
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
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
EXPOSE 8001 8002 8003
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["marsbench-healthcheck"]
CMD ["marsbench", "serve", "--host", "0.0.0.0"]
