# The image the cnvrg flow's steps run in. Build and register it in cnvrg's Containers page, then set
# `image:` of each task in traffic_signs_annotation.yaml to its name:tag.
#   docker build -t crowdboxes-steps:0.1.0 .
# cnvrg mounts the project files at /cnvrg and runs e.g. `python3 steps/create_project.py ...` there;
# the Toloka token comes from a cnvrg project secret at run time, never from this image.
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="crowdboxes-steps" \
      org.opencontainers.image.description="Steps of the Toloka road-sign bounding-box flow on cnvrg.io" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="python:3.11-slim-bookworm"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CNVRG_WORKDIR=/cnvrg

# Pinned dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt /opt/crowdboxes/requirements.txt
RUN pip install --no-cache-dir -r /opt/crowdboxes/requirements.txt

# Then the package itself, without touching the pinned dependencies.
COPY pyproject.toml README.md /opt/crowdboxes/
COPY crowdboxes /opt/crowdboxes/crowdboxes
RUN pip install --no-cache-dir --no-deps /opt/crowdboxes \
    && rm -rf /opt/crowdboxes/build /opt/crowdboxes/*.egg-info \
    && python -c "import crowdboxes.cli, toloka.client, crowdkit.aggregation"

# cnvrg's own images run jobs as an unprivileged user with uid 1000 (`ds`); so does this one.
# /cnvrg must be writable: steps write their outputs under it (CNVRG_OUTPUT_DIR or ./output).
RUN useradd --create-home --uid 1000 --shell /bin/bash ds \
    && mkdir -p /cnvrg /input /data \
    && chown ds:ds /cnvrg
# numeric, so Kubernetes (which cnvrg runs on) can check runAsNonRoot
USER 1000:1000
WORKDIR /cnvrg

CMD ["python", "-m", "crowdboxes", "--help"]
