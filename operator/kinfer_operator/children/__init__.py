"""Pure builders, one module per child kind: (model, ...) -> the desired object as a dict."""

from kinfer_operator.children.deployment import build_deployment
from kinfer_operator.children.hpa import build_hpa
from kinfer_operator.children.pdb import build_pdb
from kinfer_operator.children.service import build_service

__all__ = ["build_deployment", "build_hpa", "build_pdb", "build_service"]
