"""crystalflow_reports: the notebook and report layer of crystalflow.

Layers, each importing only those below it::

    crystalflow_reports   notebooks (package data), papermill runs, HTML reports, styled benchmark tables
    crystalviz            viewers and figures of clusters, trajectories and predictions
    crystalflow_core      the science and the run record: data, models, objectives, samplers, metrics, training

Why a package of its own rather than a part of crystalviz: crystalviz draws clusters and is useful in any
notebook or script, with no need for papermill or nbconvert; this layer orchestrates the project's own notebook
series and needs the whole Jupyter execution stack (the ``notebooks`` extra). Kept apart, neither the core nor
the viewers carry report machinery, and the notebooks ship with the code that runs them.

- :mod:`.execute` — where the notebooks are (:func:`~.execute.packaged_notebooks`), running one with papermill,
  training the runs that notebook 04 finds missing.
- :mod:`.build` — the parameters of every notebook per scale and the whole report series with its index page.
- :mod:`.render` — executed notebooks to offline HTML; :mod:`.display` — plotly figures that survive it.
- :mod:`.tables` — benchmark tables for readers: labels, "mean ± std" cells, the best method in bold.
- :mod:`.command` — ``crystalflow report``, added to the core command line through an entry point; its scales'
  names in :mod:`.scales`, which it reads without loading the rest.
"""
