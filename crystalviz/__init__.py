"""crystalviz: views of 17-molecule clusters, crystallization trajectories and predictions.

figures (plotly, static, offline HTML via html.write_html), crystals (plotly figures of a crystal structure
prediction: energy–density landscape, powder patterns), widgets (nglview + ipywidgets, need a kernel),
views.ClusterView (the plain-numpy data both consume), runs.cluster_views (views of
a trained run's sampled trajectories).
"""
