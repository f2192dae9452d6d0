# syntax=docker/dockerfile:1
#
# Two images from one file (docker-compose.yml builds both):
#   --target teacher  vLLM (ROCm by default) + distill; runs `distill teacher serve`
#   --target app      distill alone on slim Python; runs `distill ...` (worker, migrate, CLI)
#
#   docker build --target app -t distill-app .
#   docker build --target teacher -t distill-teacher .                                  # MI300X
#   docker build --target teacher --build-arg VLLM_IMAGE=vllm/vllm-openai:latest -t distill-teacher .  # NVIDIA
#
# Pin VLLM_IMAGE to a dated tag (e.g. one of rocm/vllm's rocm*_vllm_* tags) for reproducible builds.

ARG VLLM_IMAGE=rocm/vllm:latest
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${VLLM_IMAGE} AS teacher

# PIP_BREAK_SYSTEM_PACKAGES: some vLLM images install into the system Python of a PEP 668 distro.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/distill
COPY docker/pin_installed.py /tmp/pin_installed.py
COPY pyproject.toml README.md ./
COPY distill/ distill/
COPY schemas/ schemas/
COPY workers/ workers/

# Install distill beside the image's vLLM without touching it: every package the image already
# has is pinned to its installed version (torch, vllm, numpy, pydantic, ...), so pip only adds
# what is missing, and fails loudly here rather than swapping a library under vLLM at run time.
RUN python3 /tmp/pin_installed.py > /tmp/image-constraints.txt \
 && python3 -m pip install --constraint /tmp/image-constraints.txt . \
 && rm /tmp/image-constraints.txt /tmp/pin_installed.py \
 && distill teacher serve --dry-run

# The vLLM images' own entrypoint is the server; ours builds its flags from DISTILL_* settings.
ENTRYPOINT ["distill", "teacher", "serve"]
CMD []

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY distill/ distill/
COPY schemas/ schemas/
COPY workers/ workers/
RUN pip install . && distill --help > /dev/null

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin distill
COPY --from=build /opt/venv /opt/venv

USER distill
WORKDIR /home/distill
ENTRYPOINT ["distill"]
CMD ["--help"]
