"""Issue 17, item 9: one `marsbench serve` per data dir; a second one is refused at once, naming the
data dir and the pid holding it, and the lock goes away with its holder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marsbench.cli.main import main
from marsbench.cli.stack import LOCK_NAME, DataDirBusy, DataDirLock, LocalStack

PORTS = ["--encoder-port", "0", "--indexer-port", "0", "--evaluator-port", "0"]


def test_a_second_serve_on_the_same_data_dir_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = LocalStack(data_dir=tmp_path)  # holds the data dir (not started: nothing to serve)
    try:
        code = main(["serve", "--data-dir", str(tmp_path), *PORTS])
    finally:
        first.stop()
        first._lock.release()
    err = capsys.readouterr().err
    assert code == 2
    assert str(tmp_path.resolve()) in err and f"pid {os.getpid()}" in err and "--data-dir" in err


def test_the_lock_is_released_with_its_holder_and_other_dirs_are_free(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path / "a").acquire()
    assert (tmp_path / "a" / LOCK_NAME).read_text().strip() == str(os.getpid())
    DataDirLock(tmp_path / "b").acquire().release()  # another folder: no conflict
    with pytest.raises(DataDirBusy, match=f"pid {os.getpid()}"):
        DataDirLock(tmp_path / "a").acquire()
    lock.release()
    DataDirLock(tmp_path / "a").acquire().release()  # released: free again
