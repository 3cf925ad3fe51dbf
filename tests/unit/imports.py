"""What a source file imports, for the tests that keep pure packages on the standard library."""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator


def imported_modules(source: pathlib.Path) -> Iterator[str]:
    """Every module ``source`` imports (``from X import y`` gives ``X``; a relative import gives "")."""
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""
