"""Turn the user's strings into the things an explanation needs, one module per concern.

:mod:`~rsigradcam.app.loading.models` loads a ``--model`` into a classifier,
:mod:`~rsigradcam.app.loading.layers` probes a model's layers and checks ``--layer``,
:mod:`~rsigradcam.app.loading.classes` resolves ``--target``,
:mod:`~rsigradcam.app.loading.baselines` a ``--baseline``,
:mod:`~rsigradcam.app.loading.methods` ``--method``, and
:mod:`~rsigradcam.app.loading.hashing` fingerprints a model's weights. Close names are
suggested by :mod:`~rsigradcam.app.loading.suggest`. Arguments that cannot work raise
:class:`~rsigradcam.app.errors.InputError`, a ``ValueError`` whose message is one line.
"""
