FROM python:3.11.7-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_app stream_app
COPY connectors connectors
COPY topologies topologies
COPY sandbox sandbox
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []
CMD ["stream-app", "worker"]
