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

# Pinned dependencies first: this layer is rebuilt only when the requirements change. crowd-kit goes in
# with --no-deps: its declared dependencies pull transformers and pyarrow, which nothing here imports;
# requirements.txt pins what its aggregation methods do import (README, "Dependencies").
COPY requirements.txt requirements-crowdkit.txt /opt/crowdboxes/
RUN pip install --no-cache-dir -r /opt/crowdboxes/requirements.txt \
    && pip install --no-cache-dir --no-deps -r /opt/crowdboxes/requirements-crowdkit.txt

# cnvrg's SDK in its own environment: cnvrgv2 1.1.8 pins attrs~=22.1 and pytest~=7.0, which cannot sit
# next to toloka-kit's cattrs 25 (attrs>=24.3). Export publishes the dataset version by running
# crowdboxes/cnvrg/cnvrg_put.py with this interpreter (crowdboxes/cnvrg/datasets.py says why).
RUN python -m venv /opt/cnvrg-sdk \
    && /opt/cnvrg-sdk/bin/pip install --no-cache-dir cnvrgv2==1.1.8 \
    && /opt/cnvrg-sdk/bin/python -c "import cnvrgv2"

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
