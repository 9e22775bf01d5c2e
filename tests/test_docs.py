"""The generated reference pages match the code (run ``python -m tools.gen_docs``)."""

from __future__ import annotations

import pytest

from tools.gen_docs import DOCS, PAGES


@pytest.mark.parametrize("name", sorted(PAGES))
def test_reference_page_is_up_to_date(name):
    assert (DOCS / name).read_text() == PAGES[name](), f"docs/{name} is stale: run python -m tools.gen_docs"


def test_the_readme_names_every_redis_command_respkv_lacks_and_no_other():
    """README's "Not there yet" list against the command table and Redis 7.0's
    command facts: a command added or dropped without the README following fails."""
    import json
    import re
    from pathlib import Path

    from respkv.node import build_command_table

    root = Path(__file__).resolve().parent.parent
    facts = json.loads((root / "respkv" / "commands" / "redis_commands.json").read_text())
    table = build_command_table()
    lacking = {name for name in facts if table.lookup(name.encode()) is None}
    readme = (root / "README.md").read_text()
    paragraph = readme[readme.index("- Not there yet"):]
    paragraph = paragraph[:paragraph.index("\n- ")]
    named = {word.lower() for word in re.findall(r"`([A-Z_-]+)(?:\.\.\.)?`", paragraph)}
    prefixes = {word.lower() for word in re.findall(r"`([A-Z]+)\.\.\.`", paragraph)}
    covered = {name for name in lacking if name in named or any(name.startswith(p) for p in prefixes)}
    assert covered == lacking, f"missing from README: {sorted(lacking - covered)}"
    assert not {name for name in named if table.lookup(name.encode()) is not None}, "README names a command respkv has"
