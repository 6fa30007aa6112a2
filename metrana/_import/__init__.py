"""``metrana import``: runs from other trackers (TensorBoard, MLflow) into metrana.

A *source* (:mod:`.tensorboard`, :mod:`.mlflow`) turns what it reads into
:class:`.source.SourceRun` s — a run's name, config, tags and series as numpy columns, and what
it had to skip; the *loader* (:mod:`.loader`) logs each one through an ordinary
``metrana.session`` (batching, retries and the spool as for any run), resuming a run imported
before instead of storing anything twice; :mod:`.report` draws the progress and the closing
table. Nothing here is imported by ``import metrana``: the sources need the ``import`` extra.
"""
