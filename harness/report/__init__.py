"""The report: the papers' metrics from stored run outputs, figures, and a self-contained HTML page."""
