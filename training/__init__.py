"""The training pipeline: drift events -> fine-tuned embedder -> registry -> zero-downtime re-index.

Modules, one job each:

* :mod:`training.settings` - ``TrainingSettings`` (``STREAMRAG_TRAINING__*``, ``STREAMRAG_REGISTRY__*``,
  ``STREAMRAG_REINDEX__*``);
* :mod:`training.dataset` - snapshot the live collection, make (pseudo-query, passage) pairs, split;
* :mod:`training.finetune` - contrastive fine-tuning (in-batch negatives) on CPU;
* :mod:`training.evaluate` - recall@k / MRR on held-out pairs and the promotion rule;
* :mod:`training.registry` - MLflow runs, model versions, the production alias, ModelEvents
  (published by :mod:`training.events`);
* :mod:`training.run` - one training run; :mod:`training.trigger` - the drift-topic consumer;
* :mod:`training.reindex` - shadow re-index and index status; :mod:`training.aliases` - atomic
  alias switch and rollback; :mod:`training.offsets` - consumer-group positions;
* :mod:`training.cli` - the ``models``, ``index`` and ``train`` command groups.
"""
