"""One run a folder: a second run into a folder another run holds stops at once, with the holder named, and
touches nothing there; the lock goes with its process, however the process ends."""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import engine.folder_lock
from engine.folder_lock import LOCK_NAME, FolderInUseError, folder_lock

REPO = Path(__file__).resolve().parents[1]
HOLD = "import sys, time; from pathlib import Path; from engine.folder_lock import folder_lock\n" + (
    "with folder_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(600)"
)


def in_use(folder: Path, pid: int, flag: str = "--output-dir") -> str:
    return f"{flag} {folder} is in use by another run (process {pid}); give each run a folder of its own"


def test_a_held_folder_is_refused_naming_its_holder_and_free_again_once_released(tmp_path):
    folder = tmp_path / "run"
    with folder_lock(folder) as held:
        assert held == folder and (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with pytest.raises(FolderInUseError) as refused, folder_lock(folder, "--out"):
            pass
        assert str(refused.value) == in_use(folder, os.getpid(), "--out")
        assert isinstance(refused.value, OSError)  # the scripts print it as a user's error
    with folder_lock(folder):
        pass


def test_the_lock_goes_with_a_killed_process(tmp_path):
    """SIGKILL leaves no stale lock to remove by hand."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(FolderInUseError, match=f"process {holder.pid}\\)"), folder_lock(tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with folder_lock(tmp_path):
        pass


def test_a_second_training_run_into_a_held_folder_stops_and_leaves_the_first_runs_files(tmp_path):
    """Two runs into one folder wrote last.pth by way of the same temporary file, and the second, starting,
    removed the first's half-written checkpoint as one an interrupted run had left."""
    out, data = tmp_path / "out", tmp_path / "data"
    out.mkdir()
    (out / "last.pth.tmp").write_bytes(b"the first run's checkpoint, being written")
    argv = ["--preset", "demo", "--epochs", "1", "--data-root", str(data), "--output-dir", str(out)]
    with folder_lock(out):
        done = subprocess.run(
            [sys.executable, "train_voc.py", *argv], cwd=REPO, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"train_voc.py: error: {in_use(out, os.getpid())}"
    assert (out / "last.pth.tmp").read_bytes() == b"the first run's checkpoint, being written"
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "last.pth.tmp"]
    assert not data.exists()  # refused before any work


def test_a_file_system_that_cannot_lock_warns_and_lets_the_run_go_on(tmp_path, monkeypatch):
    """An NFS or cluster mount without locks once failed every run as "in use by another run"."""

    def no_locks(fd: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(engine.folder_lock, "_lock", no_locks)
    with pytest.warns(UserWarning, match=r"cannot lock \(No locks available\); nothing stops a second run"):
        with folder_lock(tmp_path) as held:
            assert held == tmp_path


def test_every_process_of_a_distributed_run_stops_when_its_folder_is_held(tmp_path, monkeypatch):
    """Under DDP only the main process held the folder; refused, it stopped while the others waited for it."""
    import engine.run

    monkeypatch.setattr(engine.run, "is_main_process", lambda: False)
    monkeypatch.setattr(engine.run, "agreed", lambda flag: True)  # the main process was refused
    with pytest.raises(FolderInUseError, match="in use by another run"), engine.run.claimed_output_dir(tmp_path):
        pass
    monkeypatch.setattr(engine.run, "agreed", lambda flag: flag)
    with engine.run.claimed_output_dir(tmp_path) as held:
        assert held == tmp_path and not (tmp_path / LOCK_NAME).exists()  # the main process holds it


def test_a_second_detection_run_into_a_held_folder_stops_and_keeps_the_first_runs_outputs(tmp_path, monkeypatch):
    import detect

    (tmp_path / "detections.jsonl").write_text('{"frame": 0}\n')
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for argv in (
        ["--input", "rtsp://camera/live", "--output-dir", str(tmp_path)],
        ["--input", str(pictures), "--output-dir", str(tmp_path)],
    ):
        monkeypatch.setattr(detect, "load_frame_detector", lambda args: (None, Path("model.pth")))
        monkeypatch.setattr(detect, "VideoReader", lambda *args, **kwargs: FakeReader())
        with folder_lock(tmp_path), pytest.raises(FolderInUseError) as refused:
            detect.main(detect.get_args_parser().parse_args(argv))
        assert str(refused.value) == in_use(tmp_path, os.getpid())
    assert (tmp_path / "detections.jsonl").read_text() == '{"frame": 0}\n'  # not moved into before-*
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME, "detections.jsonl", "pictures"]


class FakeReader:
    def close(self) -> None:
        pass
