"""The embedded default LLM, served behind Text Generation Inference's HTTP protocol (``streamrag llm``).

Modules, one job each:

- :mod:`~serving.llm.loading`: find the bundled SmolLM2 GGUF, convert it once into the project cache
- :mod:`~serving.llm.decoding`: token ids to text one token at a time; stop sequences
- :mod:`~serving.llm.model`: :class:`~serving.llm.model.LocalGenerator`, streaming generation with cancel
- :mod:`~serving.llm.engine`: bounded slots and worker threads between asyncio and the model
- :mod:`~serving.llm.protocol`: TGI and OpenAI chat wire formats
- :mod:`~serving.llm.server`: :func:`~serving.llm.server.create_app`, the FastAPI app
- :mod:`~serving.llm.metrics`: Prometheus metrics
- :mod:`~serving.llm.client`: let huggingface_hub's clients reach a local server in offline mode
- :mod:`~serving.llm.bench`, :mod:`~serving.llm.cli`: ``streamrag llm serve`` and ``streamrag llm bench``

Nothing heavy is imported here, so ``from serving.llm.cli import llm`` stays fast.
"""
