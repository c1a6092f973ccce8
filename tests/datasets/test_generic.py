"""load_table: every format, label and column mapping, and an error that names the culprit for each failure."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from reasonguard.datasets.generic import ColumnMapping, DatasetFormatError, load_table, read_records, table_format

ROWS = [
    {"uid": "a", "text": "how do I bake bread?", "reply": "Mix flour and water.", "label": "safe", "resp": 0,
     "cats": ["food"], "lang": "en"},
    {"uid": "b", "text": "how do I build a bomb?", "reply": None, "label": "UNSAFE", "resp": None,
     "cats": ["weapons", "violence"], "lang": "en"},
    {"uid": "c", "text": "write a rude joke", "reply": "No.", "label": "unsafe", "resp": 1, "cats": [], "lang": "fr"},
]
MAPPING = ColumnMapping(
    id="uid", prompt="text", response="reply", prompt_harm_label="label", response_harm_label="resp",
    categories="cats", extra=("lang",),
)


def write(path: Path, rows: list[dict]) -> Path:
    suffix = "".join(path.suffixes)
    if suffix in (".jsonl", ".jsonl.gz"):
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if suffix.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix in (".csv", ".tsv"):
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if suffix == ".tsv" else ",")
            writer.writeheader()
            for r in rows:
                writer.writerow({k: ("|".join(v) if isinstance(v, list) else ("" if v is None else v)) for k, v in r.items()})
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".parquet", ".jsonl.gz"])
def test_every_format_maps_the_same(tmp_path, suffix):
    path = write(tmp_path / f"mine{suffix}", ROWS)
    columns = MAPPING.model_copy(update={"categories_sep": "|"}) if suffix in (".csv", ".tsv") else MAPPING
    examples = load_table(path, columns, split="train")
    assert [e.id for e in examples] == ["mine:a", "mine:b", "mine:c"]
    assert {e.source for e in examples} == {"mine"} and {e.split for e in examples} == {"train"}
    assert [e.prompt_harm_label for e in examples] == ["unharmful", "harmful", "harmful"]
    assert [e.response_harm_label for e in examples] == ["unharmful", None, "harmful"]
    assert [e.response for e in examples] == ["Mix flour and water.", None, "No."]
    assert [e.categories for e in examples] == [("food",), ("weapons", "violence"), ()]
    assert [e.extra for e in examples] == [{"lang": "en"}, {"lang": "en"}, {"lang": "fr"}]


def test_generated_ids_and_custom_label_map(tmp_path):
    rows = [{"q": "hi", "is_safe": True}, {"q": "hurt him", "is_safe": False}, {"q": "maybe", "is_safe": None}]
    path = write(tmp_path / "t.jsonl", rows)
    examples = load_table(
        path, ColumnMapping(prompt="q", prompt_harm_label="is_safe"), source="mine",
        label_map={True: "unharmful", False: "harmful"},
    )
    assert [e.id for e in examples] == ["mine:0", "mine:1", "mine:2"]
    assert [e.prompt_harm_label for e in examples] == ["unharmful", "harmful", None]


def test_default_label_map_accepts_common_spellings(tmp_path):
    values = ["harmful", "Unharmful", " SAFE ", "unsafe", 1, 0, 1.0, True, False, "yes", "no"]
    path = write(tmp_path / "t.jsonl", [{"p": "x", "l": v} for v in values])
    labels = [e.prompt_harm_label for e in load_table(path, ColumnMapping(prompt="p", prompt_harm_label="l"))]
    assert labels == ["harmful", "unharmful", "unharmful", "harmful", "harmful", "unharmful", "harmful", "harmful",
                      "unharmful", "harmful", "unharmful"]


def test_refusal_labels_go_to_extra(tmp_path):
    rows = [{"p": "x", "r": "ok", "refusal": "refusal"}, {"p": "y", "r": "sure", "refusal": "compliance"}]
    path = write(tmp_path / "t.jsonl", rows)
    examples = load_table(path, ColumnMapping(prompt="p", response="r", response_refusal_label="refusal"))
    assert [e.extra["response_refusal_label"] for e in examples] == ["refusal", "compliance"]
    assert all(e.response_harm_label is None for e in examples)


def test_categories_from_flags_and_separated_strings(tmp_path):
    rows = [{"p": "x", "c": {"violence": True, "hate": False, "crime": True}}, {"p": "y", "c": "S1, S8"}]
    path = write(tmp_path / "t.jsonl", rows)
    examples = load_table(path, ColumnMapping(prompt="p", categories="c", categories_sep=","))
    assert [e.categories for e in examples] == [("violence", "crime"), ("S1", "S8")]


def test_limit_and_json_lines_in_a_json_file(tmp_path):
    path = tmp_path / "aegis_like.json"
    path.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(5)))
    assert [e.prompt for e in load_table(path, ColumnMapping(prompt="prompt"), limit=2)] == ["p0", "p1"]


def test_remote_paths_through_fsspec():
    fsspec = pytest.importorskip("fsspec")
    with fsspec.open("memory://reasonguard-test/t.jsonl", "w") as f:
        f.write(json.dumps({"prompt": "remote", "label": "safe"}) + "\n")
    [example] = load_table("memory://reasonguard-test/t.jsonl", ColumnMapping(prompt="prompt", prompt_harm_label="label"))
    assert example.id == "t:0" and example.prompt_harm_label == "unharmful"


# ------------------------------------------------------------ errors


def test_missing_column_names_it_and_lists_the_available_ones(tmp_path):
    path = write(tmp_path / "t.jsonl", ROWS)
    with pytest.raises(DatasetFormatError) as err:
        load_table(path, ColumnMapping(prompt="text", prompt_harm_label="verdict"))
    message = str(err.value)
    assert "'verdict'" in message and "prompt_harm_label" in message and "'uid'" in message and "'text'" in message


def test_unknown_label_value_names_the_value_and_the_row(tmp_path):
    path = write(tmp_path / "t.jsonl", [{"p": "a", "l": "safe"}, {"p": "b", "l": "borderline"}])
    with pytest.raises(DatasetFormatError, match=r"'borderline'.*'l'.*row 1"):
        load_table(path, ColumnMapping(prompt="p", prompt_harm_label="l"))


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(DatasetFormatError, match=r"unsupported file type '\.xlsx'.*\.jsonl"):
        load_table(path, ColumnMapping(prompt="p"))
    with pytest.raises(DatasetFormatError, match="unsupported"):
        table_format("no_suffix")


def test_duplicate_ids_and_missing_prompts_are_errors(tmp_path):
    path = write(tmp_path / "t.jsonl", [{"i": 1, "p": "a"}, {"i": 1, "p": "b"}])
    with pytest.raises(DatasetFormatError, match=r"duplicate id 't:1'.*rows 0 and 1"):
        load_table(path, ColumnMapping(id="i", prompt="p"))
    path = write(tmp_path / "u.jsonl", [{"p": "a"}, {"p": None}])
    with pytest.raises(DatasetFormatError, match=r"'p' at row 1.*must hold text"):
        load_table(path, ColumnMapping(prompt="p"))


def test_response_label_without_response_is_an_error(tmp_path):
    path = write(tmp_path / "t.jsonl", [{"p": "a", "r": None, "l": "unsafe"}])
    with pytest.raises(DatasetFormatError, match="row 0.*without a response"):
        load_table(path, ColumnMapping(prompt="p", response="r", response_harm_label="l"))


def test_bad_label_map_target_and_bad_mapping_fields(tmp_path):
    path = write(tmp_path / "t.jsonl", [{"p": "a", "l": 1}])
    with pytest.raises(ValueError, match="'toxic'"):
        load_table(path, ColumnMapping(prompt="p", prompt_harm_label="l"), label_map={1: "toxic"})
    with pytest.raises(ValidationError):
        ColumnMapping(prompt="p", label="l")  # unknown field: a typo fails fast
    with pytest.raises(ValidationError):
        ColumnMapping(response="r")  # prompt is required


def test_invalid_jsonl_line_and_missing_file(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"p": "a"}\n{not json\n')
    with pytest.raises(DatasetFormatError, match="line 2"):
        read_records(path)
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "absent.csv")


def test_a_csv_row_with_an_unquoted_comma_is_an_error_not_a_cut_prompt(tmp_path):
    """Read by position, 'how do I, like, build a bomb' would load as 'how do I' and lose the rest."""
    from reasonguard.datasets.generic import DatasetFormatError, read_records

    path = tmp_path / "prompts.csv"
    path.write_text('text,source\nhello there,a\n"quoted, fine",b\nhow do I, like, build a bomb,c\n')
    with pytest.raises(DatasetFormatError, match=r"prompts\.csv line 4: 4 fields where the header has 2"):
        read_records(path)
    short = tmp_path / "short.tsv"
    short.write_text("text\tlabel\nhello\t0\nno label here\n")
    with pytest.raises(DatasetFormatError, match=r"short\.tsv line 3: 1 fields where the header has 2"):
        read_records(short)
    good = tmp_path / "good.csv"
    good.write_text('text,label\nhello,0\n"a, b",1\n')
    assert [r["text"] for r in read_records(good)] == ["hello", "a, b"]


def test_the_predict_job_exits_2_with_the_file_and_line(tmp_path):
    from jobs.predict import main

    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhow do I, like, build a bomb,1\n")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"engine: {{kind: transformers, model: tiny}}\ndata: [{{path: {bad}, columns: {{prompt: text, prompt_harm_label: label}}}}]\n"
                   f"output_dir: {tmp_path / 'out'}\n")
    assert main(["--config", str(cfg)]) == 2
