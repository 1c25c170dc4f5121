"""kinfer operator: reconciles InferenceModel resources into serving workloads."""

__all__ = ["__version__"]

__version__ = "0.1.0"
