"""unlearning-harness: the NeurIPS 2023 Machine Unlearning competition's evaluation, anywhere."""
__version__ = "0.1.0"
