"""Node ids are created once and kept in the data directory."""

import pytest

from respkv.cluster.identity import IdentityError, load_or_create_node_id


def test_node_id_is_created_once_and_kept(tmp_path):
    first = load_or_create_node_id(str(tmp_path / "d"))
    assert len(first) == 40 and int(first, 16) >= 0
    assert load_or_create_node_id(str(tmp_path / "d")) == first
    assert load_or_create_node_id(str(tmp_path / "other")) != first


def test_a_corrupt_id_file_is_an_error(tmp_path):
    (tmp_path / "node-id").write_text("not an id\n")
    with pytest.raises(IdentityError):
        load_or_create_node_id(str(tmp_path))
