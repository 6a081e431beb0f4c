# The image of one web app version: its bundle and the platform's small static server. The
# platform's build step stores the bundle (<webapp>/<version>/bundle.tar.gz in the artifact store);
# CI builds and pushes the image with the version as its immutable tag, which is what the
# Kubernetes and GitOps targets deploy:
#   aws s3 cp s3://delivery-artifacts/artifacts/<webapp>/<version>/bundle.tar.gz build/
#   mkdir -p build/site && tar -xzf build/bundle.tar.gz -C build/site
#   docker build -f deploy/webapp.Dockerfile --build-arg SITE=build/site \
#     -t registry.example.com/delivery/<webapp>:<version> .
# The environment's /config.json comes from PLATFORM_WEBAPP_CONFIG, set per environment by the
# deploy: one image serves every environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PLATFORM_WEBAPP_ROOT=/site

RUN groupadd --gid 10001 service \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin service \
    && pip install "uvicorn>=0.29" "starlette>=0.37" "prometheus-client>=0.20,<1"
# The serving wrapper and the static server: stdlib, Starlette and prometheus-client modules only.
COPY platform_assets/__init__.py platform_assets/serving.py platform_assets/serving_metrics.py \
     /opt/platform/platform_assets/
COPY platform_assets/kinds/__init__.py /opt/platform/platform_assets/kinds/
COPY platform_assets/kinds/webapp/__init__.py platform_assets/kinds/webapp/server.py \
     /opt/platform/platform_assets/kinds/webapp/
ENV PYTHONPATH=/opt/platform
ARG SITE
COPY ${SITE} /site

USER 10001:10001
EXPOSE 8080
CMD ["python", "-m", "uvicorn", "--help"]
