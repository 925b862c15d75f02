# The runtime image every compiled task runs in: python slim + a pinned skitflow.
# Build: make image  (tags ghcr.io/skitflow/skitflow:<version>, the default image of packages)
# With plugins: make image PLUGINS="skitflow-foo==1.2 skitflow-bar" IMAGE=registry/you/skitflow-plugins:1
# (pip requirement specifiers), then set `image:` and `plugins:` in the recipe.
FROM python:3.11-slim

ARG VERSION
ARG PLUGINS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

# libgomp: xgboost's OpenMP runtime.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# One list of what the image installs, shared with the launcher-parity harness (tests/launcher/).
COPY requirements-runtime.txt ./
RUN pip install -r requirements-runtime.txt
COPY pyproject.toml README.md ./
COPY skitflow ./skitflow
RUN pip install --no-deps . \
 && if [ -n "${PLUGINS}" ]; then pip install ${PLUGINS}; fi \
 && pip check \
 && python -c "import skitflow, sys; assert skitflow.__version__ == '${VERSION}', skitflow.__version__" \
 && rm -rf /src

WORKDIR /work
RUN useradd --create-home --uid 1000 skitflow
USER skitflow
