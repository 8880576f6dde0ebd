"""crystalviz: views of 17-molecule clusters, crystallization trajectories and predictions.

figures (plotly, static, offline HTML via html.write_html), widgets (nglview + ipywidgets, need a kernel),
views.ClusterView (the plain-numpy data both consume), runs.cluster_views (views of
a trained run's sampled trajectories).
"""
