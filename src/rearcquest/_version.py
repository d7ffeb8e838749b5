"""The version of rearcquest: a leaf that any module may import without loading the package API.

Hatch reads it from here (``[tool.hatch.version]`` in ``pyproject.toml``).
"""

from __future__ import annotations

__version__ = "0.1.0"
