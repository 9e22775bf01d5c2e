"""The generated reference pages match the code (run ``python -m tools.gen_docs``)."""

from __future__ import annotations

import pytest

from tools.gen_docs import DOCS, PAGES


@pytest.mark.parametrize("name", sorted(PAGES))
def test_reference_page_is_up_to_date(name):
    assert (DOCS / name).read_text() == PAGES[name](), f"docs/{name} is stale: run python -m tools.gen_docs"
