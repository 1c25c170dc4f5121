"""Allows `python -m kinfer_runtime`, which the tests use to start real server processes."""

from kinfer_runtime.cli import main

raise SystemExit(main())
