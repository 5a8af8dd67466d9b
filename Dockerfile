# One image for all three services; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY integrator ./integrator
COPY services ./services
RUN pip install --no-cache-dir .
COPY schemas ./schemas
COPY config ./config
USER nobody
CMD ["integrator-gateway"]
