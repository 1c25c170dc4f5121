"""kinfer runtime: an Open Inference Protocol (KServe v2) server for ONNX Runtime and PyTorch."""

__all__ = ["__version__"]

__version__ = "0.1.0"
