"""The evaluation harness: declarative tasks, predictors, runs, metrics and reports.

- :mod:`.task`: the task file schema and registry (``affectgraph/evals/tasks/*.yaml``);
- :mod:`.splits`: labelled items, speaker-independent folds, the plan of a run;
- :mod:`.predictors`: the predictor contract, its registry and the ``dummy`` predictor;
  :mod:`.specialists`: the ``face``, ``voice``, ``text`` and ``av`` predictors;
- :mod:`.runner`: runs with a per-item cache (:mod:`.cache`), worker processes, atomic outputs;
- :mod:`.metrics`, :mod:`.reasoning`: recognition and reasoning metrics;
- :mod:`.report`, :mod:`.compare`: the outputs of a run, and the difference of two runs.
"""
