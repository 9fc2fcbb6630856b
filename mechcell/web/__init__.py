"""The biologist's web door: `create_app(settings)` (FastAPI) and a static chat page shipped in the package.

    mechcell serve --store mechcell.duckdb          # http://127.0.0.1:8000

Imported lazily by the CLI: nothing here loads until `mechcell serve` runs.
"""

from __future__ import annotations

from mechcell.web.app import STATIC_DIR, create_app
from mechcell.web.security import WebLimits
from mechcell.web.views import TraceView, trace_view

__all__ = ["STATIC_DIR", "TraceView", "WebLimits", "create_app", "trace_view"]
