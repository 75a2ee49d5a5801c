"""The embedded default LLM: llama.cpp's OpenAI-compatible server on a packaged GGUF model (``streamrag llm``).

Modules, one job each:

- :mod:`~serving.llm.weights`: the packaged models; join their pieces once into the cache, checked
- :mod:`~serving.llm.settings`: model, context, threads, port (``STREAMRAG_LLM_*``)
- :mod:`~serving.llm.server`: configure llama-cpp-python's own server app, plus ``/health``
- :mod:`~serving.llm.client`: let huggingface_hub's clients reach a local server in offline mode
- :mod:`~serving.llm.bench`, :mod:`~serving.llm.cli`: ``streamrag llm serve`` and ``streamrag llm bench``

Nothing heavy is imported here, so ``from serving.llm.cli import llm`` stays fast.
"""
