"""The commands of ``rsigradcam``, one module per group; :mod:`rsigradcam.app.cli` assembles them.

Each module parses its command's options (declared once in :mod:`rsigradcam.app.options`)
and hands them to the application's modules; torch and the library are imported only
when a command runs.
"""
