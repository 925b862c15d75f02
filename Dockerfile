# The runtime image every compiled task runs in: python slim + a pinned skitflow.
# Build: make image  (tags ghcr.io/skitflow/skitflow:<version>, the default image of packages)
FROM python:3.11-slim

ARG VERSION
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

# libgomp: xgboost's OpenMP runtime.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY skitflow ./skitflow
RUN pip install . && python -c "import skitflow, sys; assert skitflow.__version__ == '${VERSION}', skitflow.__version__" \
 && rm -rf /src

WORKDIR /work
RUN useradd --create-home --uid 1000 skitflow
USER skitflow
