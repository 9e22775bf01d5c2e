"""Layout rules of the package that no import contract can express.

The layers themselves are checked by ``lint-imports`` (contracts in
``pyproject.toml``, run by ``tools/test.sh``); this file keeps modules small enough
to read in one sitting and the launcher out of the node runtime's directories.
"""

from __future__ import annotations

import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "respkv"

#: Most lines a module of the package may have.
MAX_LINES = 600

#: Modules allowed past MAX_LINES, each with the reason (none today).  Keep this
#: list empty: a module that grows past the limit is split along a natural seam.
OVERSIZED: dict[str, str] = {}


def _modules() -> dict[str, int]:
    return {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_no_module_is_over_the_line_limit():
    too_long = {
        name: lines for name, lines in _modules().items() if lines > MAX_LINES and name not in OVERSIZED
    }
    assert not too_long, f"modules over {MAX_LINES} lines (split them along a natural seam): {too_long}"


def test_launcher_is_not_in_the_cluster_package():
    # The local cluster launcher is a tool (respkv.launcher), not node runtime.
    assert not (PACKAGE / "cluster" / "launcher.py").exists()
    assert (PACKAGE / "launcher" / "__init__.py").exists()
