# The image of one service version. The platform's build step produces the wheel (stored in the
# artifact store under <service>/<version>/); CI builds and pushes the image with the version as
# its immutable tag, which is exactly the reference the Kubernetes and GitOps targets deploy:
#   aws s3 cp s3://delivery-artifacts/artifacts/<service>/<version>/<wheel> build/
#   docker build -f deploy/service.Dockerfile --build-arg WHEEL=build/<wheel> \
#     -t registry.example.com/delivery/<service>:<version> .
# The container runs uvicorn on port 8080 behind the platform's serving wrapper, which serves the
# Prometheus metrics at /-/metrics (resources/k8s_manifests.py sets the command, probes and the
# scrape annotations).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --gid 10001 service \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin service

ARG WHEEL
# Runtime dependencies first (a stable layer), then the service's own wheel.
RUN pip install "uvicorn>=0.29" "fastapi>=0.110" "prometheus-client>=0.20,<1"
# The serving wrapper: three stdlib + prometheus-client modules of the platform, nothing else of it.
COPY platform_assets/__init__.py platform_assets/serving.py platform_assets/serving_metrics.py \
     /opt/platform/platform_assets/
ENV PYTHONPATH=/opt/platform
COPY ${WHEEL} /tmp/wheels/
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels

USER 10001:10001
EXPOSE 8080
CMD ["python", "-m", "uvicorn", "--help"]
