"""Imports the handler a bundle's manifest names, reporting a failure by file and line."""

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from kinfer_runtime.errors import ModelLoadError
from kinfer_runtime.handlers import Handler, HandlerContext

__all__ = ["load_handler"]


def _where(exc: BaseException, root: Path | None) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        filename, line = exc.filename, exc.lineno
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        # The deepest frame outside the import machinery: the handler's own line.
        ours = [f for f in frames if "importlib" not in f.filename] or frames
        if not ours:
            return ""
        filename, line = ours[-1].filename, ours[-1].lineno
    path = Path(filename)
    if root is not None and path.is_relative_to(root):
        filename = str(path.relative_to(root))
    return f"{filename}:{line}: "


def _module(target: str, root: Path | None) -> Any:
    if not target.endswith(".py"):
        return importlib.import_module(target)
    if root is None:
        raise ModelLoadError(f"handler file {target} needs a bundle")
    path = (root / target).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise ModelLoadError(f"handler file {target} is not in the bundle")
    name = f"kinfer_bundle_handler_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Siblings in the bundle are importable from the handler (a helper module, say); last
    # on the path, so that a bundle file never shadows a module the runtime imports.
    if str(root) not in sys.path:
        sys.path.append(str(root))
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_handler(spec: str, context: HandlerContext) -> Handler:
    """An instance of `file.py:Class` (in the bundle) or `package.module:Class`."""
    target, _, class_name = spec.partition(":")
    try:
        module = _module(target, context.root)
        cls = getattr(module, class_name, None)
        if cls is None:
            raise ModelLoadError(f"handler {spec}: {target} has no {class_name}")
        handler = cls(context)
        for method in ("preprocess", "postprocess"):
            if not callable(getattr(handler, method, None)):
                raise ModelLoadError(f"handler {spec} has no {method}() method")
        outputs = getattr(handler, "outputs", ())
        if not isinstance(outputs, tuple) or not all(isinstance(o, str) for o in outputs):
            raise ModelLoadError(f"handler {spec}: `outputs` must be a tuple of names")
        return handler  # type: ignore[no-any-return]
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"handler {spec} failed to load: {_where(exc, context.root)}{type(exc).__name__}: {exc}"
        ) from exc
