# kubekeeper: one image for the node agent (DaemonSet) and the cluster tasks (CronJobs).
#
#   docker build -t kubekeeper:0.1.0 .
#   docker build --build-arg BASE_IMAGE=my-registry/python:3.12-slim -t kubekeeper:0.1.0 .
#
# BASE_IMAGE is any Debian-like image with python3 (3.11+) and its venv module; both
# stages use it, so the virtualenv's interpreter path is the same in the final image.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# .dockerignore lets in only pyproject.toml, README.md and agents/.
COPY . .
# A venv holding kubekeeper and its dependencies, compiled to bytecode (the pods' root
# filesystem is read-only) and with pip and setuptools removed: nothing installs at run time.
RUN python3 -m venv /opt/kubekeeper \
 && /opt/kubekeeper/bin/pip install --no-cache-dir --disable-pip-version-check . \
 && /opt/kubekeeper/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

FROM ${BASE_IMAGE}
RUN useradd --uid 65532 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kubekeeper
COPY --from=build /opt/kubekeeper /opt/kubekeeper
ENV PATH=/opt/kubekeeper/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The CronJobs run as this user; the DaemonSet overrides it with root for the Docker socket.
USER 65532:65532
ENTRYPOINT ["kubekeeper"]
CMD ["--help"]
