"""The run framework shared by ``explain-dataset`` and ``evaluate``.

A run splits its images into shards that are finished exactly when their last file exists
(:mod:`~rsigradcam.app.runs.shards`, which also merges them into the manifest), shares
them out among the processes of a torchrun (:mod:`~rsigradcam.app.runs.distributed`),
holds a lock on its output folder (:mod:`~rsigradcam.app.runs.lock`) and shows its
progress (:mod:`~rsigradcam.app.runs.progress`).
"""
