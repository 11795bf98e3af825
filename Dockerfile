# armdata GPU worker image: Beam's Python 3.11 SDK container (its boot entrypoint runs the SDK harness), CUDA torch
# at armdata's pinned version (PyPI's Linux torch wheel bundles the CUDA runtime; the host gives the driver), the
# pinned stack, and armdata with its model and storage extras. The same image serves as
#   Dataflow:    --sdk_container_image=REGISTRY/armdata-worker-gpu:TAG   (with --preset dataflow-gpu)
#   Flink/Spark: --environment_type=DOCKER --environment_config=REGISTRY/armdata-worker-gpu:TAG
# Build from the repository root:
#   docker build -t REGISTRY/armdata-worker-gpu:0.1.0 .
# Every version pinned here equals pyproject.toml's (tests/house/test_worker_image.py reads both).

ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

ARG BEAM_VERSION=2.77.0
ARG TORCH_VERSION=2.13.0
ARG TENSORFLOW_CPU_VERSION=2.21.0
ARG TENSORFLOW_DATASETS_VERSION=4.9.10
ARG WEBDATASET_VERSION=1.0.2

ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# CUDA torch first (PyPI's default Linux wheel is the CUDA build), so nothing later pulls another torch.
RUN pip install "torch==${TORCH_VERSION}"

# The pinned stack and armdata with its extras: GPU models (molmo, sam2, detector) and both clouds' storage.
COPY pyproject.toml README.md /src/
COPY armdata /src/armdata
RUN pip install "/src[gcp,aws,molmo,sam2,detector]" \
        "torch==${TORCH_VERSION}" \
        "apache-beam==${BEAM_VERSION}" \
        "tensorflow-cpu==${TENSORFLOW_CPU_VERSION}" \
        "tensorflow-datasets==${TENSORFLOW_DATASETS_VERSION}" \
        "webdataset==${WEBDATASET_VERSION}" \
    && pip check \
    && python -c "import armdata, torch, apache_beam; print('armdata', armdata.__version__, 'torch', torch.__version__, 'cuda', torch.version.cuda)"

# Beam's SDK harness stays the entrypoint (inherited from the base image): /opt/apache/beam/boot
