"""The click commands: one module per command or command family, all thin.

Each command parses its options and calls the core; :mod:`assisters.commands.main`
holds the group and ``main``, the one place that maps outcomes to exit statuses.
Shared options are in :mod:`~assisters.commands.options`, and the translation
from parameters to settings, prompt and request body in
:mod:`~assisters.commands.inputs`.
"""
