# One image for every process of the platform. Build from the repository root, naming the service whose web process
# the image runs unless told otherwise:
#   docker build --build-arg SERVICE=ideas -t twincity-ideas .
# The code is the same in every image (one pyproject.toml installs every package); docker-compose.yml and the
# Kubernetes manifests name each container's command (`twincity <service> web` or `worker`) anyway.
FROM python:3.11-slim

ARG SERVICE=gateway
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TWINCITY_SERVICE=${SERVICE}
LABEL org.opencontainers.image.title="twincity-${SERVICE}"

# A user of its own (not root), with a home directory for whatever a library keeps there.
RUN useradd --create-home --uid 10001 twincity

# One pyproject.toml installs every package, so the install needs every package directory.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/ services/
COPY gateway/ gateway/
COPY twincity/ twincity/
COPY ideas-service/ ideas-service/
COPY matching-service/ matching-service/
COPY notify-service/ notify-service/
# The sources go once installed, so nothing can import them from the working directory instead.
RUN pip install --no-cache-dir . && rm -rf /src

USER twincity
WORKDIR /home/twincity

EXPOSE 8000
CMD ["sh", "-c", "exec twincity \"$TWINCITY_SERVICE\" web"]
