"""The project's one atomic writer: complete files or none, the old file kept on failure, nothing left over."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from monai_wsseg.utils.atomic import (
    temporary_path,
    write_atomically,
    write_text_atomically,
)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_success_replaces_the_target_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")
    seen = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"a,b\r\n1,2\r\n")

    assert write_atomically(str(path), write) == path
    assert path.read_bytes() == b"a,b\r\n1,2\r\n"
    assert names(tmp_path) == ["table.csv"]
    # the temporary file: hidden, in the same folder, not ending with the target's suffix (globs skip it)
    (tmp,) = seen
    assert tmp.parent == tmp_path and tmp.name.startswith(".table.csv.tmp-") and not tmp.name.endswith(".csv")
    assert f"-{os.getpid()}-" in tmp.name
    assert write_text_atomically(path, "é\r\n") == path
    assert path.read_bytes() == "é\r\n".encode()  # UTF-8, line endings as given


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), ValueError("bad"), KeyboardInterrupt()])
def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path, error):
    path = tmp_path / "map.png"
    path.write_bytes(b"complete")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise error

    with pytest.raises(type(error)):
        write_atomically(path, write)
    assert path.read_bytes() == b"complete"
    assert names(tmp_path) == ["map.png"]


def test_failure_before_any_byte_and_on_a_new_target(tmp_path):
    def write(tmp: Path) -> None:
        raise RuntimeError("failed before opening")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "new.json", write)
    assert names(tmp_path) == []


def test_a_missing_folder_is_a_clear_error(tmp_path):
    calls = []
    with pytest.raises(FileNotFoundError, match=r"missing.*does not exist") as info:
        write_atomically(tmp_path / "missing" / "t.md", calls.append)
    assert str(tmp_path / "missing" / "t.md") in str(info.value)
    assert calls == []  # nothing was written anywhere
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match="afile is not a folder"):
        write_text_atomically(tmp_path / "afile" / "t.md", "x")
    assert names(tmp_path) == ["afile"]


def test_concurrent_writers_never_share_a_temporary(tmp_path):
    assert len({temporary_path(tmp_path / "a.txt") for _ in range(100)}) == 100
    path = tmp_path / "shared.txt"
    texts = [str(i) * 1000 for i in range(8)]
    threads = [threading.Thread(target=write_text_atomically, args=(path, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_text() in texts  # one writer's complete text, never a mix
    assert names(tmp_path) == ["shared.txt"]
