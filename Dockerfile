# The identity provider under gunicorn. Front-end assets are built in a Node stage, not committed.
FROM node:20-bookworm-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --system --uid 10001 --home /app idp
WORKDIR /app
COPY pyproject.toml README.md ./
COPY idp ./idp
COPY config ./config
COPY --from=assets /build/node_modules/@gouvfr/dsfr/dist ./idp/static/dsfr
RUN pip install . && find idp/static/dsfr -name '*.map' -delete
USER idp
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["gunicorn", "idp:create_app()", "-c", "config/gunicorn.conf.py"]
