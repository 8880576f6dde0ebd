"""The scales of the report series (``crystalflow report --scale``): what each runs is
:func:`~crystalflow_reports.build.scale_parameters`. A module of their names alone, so that the command lists them
without loading the report machinery (pandas, torch, papermill)."""

#: ``smoke``: a few structures and a tiny model, to check the whole series; ``default``: the notebooks' own defaults.
SCALES = ("smoke", "default")
