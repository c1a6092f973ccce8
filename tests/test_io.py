from __future__ import annotations

from reasonguard.io import PartWriter, done_keys, read_parts, write_json, write_single_parquet


def test_parts_append_and_resume(tmp_path):
    w = PartWriter(tmp_path / "out")
    w.write([{"id": "a", "s": 0, "v": 1.0}, {"id": "b", "s": 0, "v": 2.0}])
    w.write([])
    # A second writer (a resumed run) keeps appending without clobbering.
    w2 = PartWriter(tmp_path / "out")
    w2.write([{"id": "a", "s": 1, "v": 3.0}])
    rows = read_parts(tmp_path / "out")
    assert sorted((r["id"], r["s"]) for r in rows) == [("a", 0), ("a", 1), ("b", 0)]
    assert done_keys(tmp_path / "out", ["id", "s"]) == {("a", 0), ("b", 0), ("a", 1)}
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_missing_folder_is_empty(tmp_path):
    assert read_parts(tmp_path / "nope") == []
    assert done_keys(tmp_path / "nope", ["id"]) == set()


def test_single_file_and_json(tmp_path):
    p = write_single_parquet([{"x": 1}], tmp_path / "a" / "t.parquet")
    assert read_parts(p) == [{"x": 1}]
    j = write_json({"b": 1}, tmp_path / "m.json")
    assert j.read_text().strip().startswith("{")


def test_atomic_dir_replaces_on_success_and_keeps_the_old_folder_on_failure(tmp_path):
    import pytest

    from reasonguard.io import atomic_dir

    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("v1")
    assert (target / "config.json").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "config.json").write_text("half")
            raise RuntimeError("crash mid-save")
    assert (target / "config.json").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
