# syntax=docker/dockerfile:1
# zk0-hub-download: the init container that puts a Hugging Face Hub dataset into a pod's Hub cache
# before the worker or aggregator starts. zk0 itself never downloads; the operator runs this image
# with `download --repo-type dataset REPO --revision REV` and HF_HOME pointing at the shared
# cache volume, which the C++ reader then reads in the Hub's cache layout
# ($HF_HOME/hub/datasets--OWNER--NAME/snapshots/COMMIT/...).
#
#   docker build -f docker/hub-download.Dockerfile -t zk0/hub-download:0.1.0 .

FROM python:3.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/hub \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HOME=/tmp
RUN pip install --no-cache-dir huggingface_hub==0.36.0 \
 && mkdir -p /hub \
 && chown 65532:65532 /hub
WORKDIR /hub
USER 65532:65532
ENTRYPOINT ["huggingface-cli"]
CMD ["--help"]
