"""The scripts' shared endings: a one-line refusal with exit status 2, JSON written whole into a new folder."""

from __future__ import annotations

import json

import pytest

from monai_wsseg.utils.cli import refuse, write_json


def test_refuse_prints_the_first_line_and_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        refuse(ValueError("slide.svs: truncated file\nmore detail"))
    assert exc.value.code == 2 and capsys.readouterr().err == "refused: slide.svs: truncated file\n"
    with pytest.raises(SystemExit):
        refuse(FileNotFoundError())
    assert capsys.readouterr().err == "refused: FileNotFoundError\n"


def test_write_json_makes_the_folder_and_leaves_no_temporary(tmp_path):
    path = write_json(tmp_path / "a" / "b.json", {"size": (3, 4), "ids": {2, 1}}, default=sorted)
    assert json.loads(path.read_text()) == {"size": [3, 4], "ids": [1, 2]} and path.read_text().endswith("}\n")
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]
