"""ipywidgets dashboards over the engine's events, importable as ``hugectr_lab.widgets``.

The engine never imports this package; views subscribe to the events a Session publishes.
"""
