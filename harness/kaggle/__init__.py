"""Kaggle competition notebooks, offline: export a submission as a notebook (export), rewrite a
notebook minimally to run here (rewrite), run it in the sandbox with a Jupyter kernel (run,
kernel), score a submission.zip (checkpoints)."""
