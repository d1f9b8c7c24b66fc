"""The application: the ``rsigradcam`` command and everything that touches files.

The explain pipeline, the dataset runner, the evaluation and its report, the benchmark
and the demo. It imports the library; the library never imports it.
"""
