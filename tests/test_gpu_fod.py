"""benchmarks/gpu_fod.py end to end on the CPU with --tiny: the report a GPU run writes."""
import importlib.util
import json
import sys
from pathlib import Path

from dataset.synthetic import generate

GPU_FOD = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_fod.py"


def load_gpu_fod():
    spec = importlib.util.spec_from_file_location("gpu_fod", GPU_FOD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_the_report(tmp_path, monkeypatch):
    generate(tmp_path / "data", {"train": 4, "val": 2}, seed=5, size=(144, 256))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["gpu_fod.py", "--tiny", "--data-root", str(tmp_path / "data"), "--out", str(out),
                                      "--train-minutes", "0.1", "--workers", "0", "--full-res-steps", "1"])
    load_gpu_fod().main()
    results = json.loads((out / "results.json").read_text())
    fod = results["fod"]
    assert set(fod["ap"]) == {"nail", "clip_B", "clip_Y", "L_stick"} and 0.0 <= fod["map"] <= 1.0
    assert fod["train_steps"] >= 1 and fod["val_images"] == 2 and fod["inference_images_per_second"] > 0
    assert results["full_res"]["size"] == [144, 256] and results["full_res"]["images_per_second"] > 0
    assert "**mAP**" in (out / "results.md").read_text()
    assert sorted(p.name for p in (out / "checkpoint").glob("*.pth")) == ["last.pth"]
