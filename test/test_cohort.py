"""spider-segment --workers / --cluster on real Dask clusters (separate worker processes) with a
tiny untrained model: cohort.csv, run.json, a corrupt file, --resume, a worker killed mid-run;
the rows of a mask; and no Dask import without the cohort options."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.cli import main
from algorithm.cohort_table import COLUMNS, EMPTY, NO_CANAL, NOT_MEASURED, PARTIAL, structure_rows

REPO = Path(__file__).resolve().parents[1]


def volumes(folder: Path, n: int, corrupt: str | None = None) -> list[str]:
    """``n`` small synthetic sagittal volumes case0.mha..., and a corrupt ``corrupt``.mha; their case names."""
    from spider_tools.synthetic import synthesize

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sitk.WriteImage(synthesize((12, 64, 48), (3.5, 1.2, 1.2), seed=i)[0], str(folder / f"case{i}.mha"))
    if corrupt:
        (folder / f"{corrupt}.mha").write_bytes(b"not an image")
    return [f"case{i}" for i in range(n)] + ([corrupt] if corrupt else [])


def table(out: Path) -> list[dict]:
    with (out / "cohort.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def test_local_cluster_of_two_workers_with_a_corrupt_file_then_resume(tmp_path, tiny_model_dir):
    pytest.importorskip("distributed")
    cases = volumes(tmp_path / "in", 3, corrupt="broken")
    out = tmp_path / "out"
    args = ["-i", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_dir), "--backend", "onnxruntime"]
    assert main([*args, "--workers", "2"]) == 1  # the others finish, then the run says one failed
    assert sorted(p.name for p in out.glob("*.mha")) == ["case0.mha", "case1.mha", "case2.mha"]
    rows = table(out)
    assert {r["case"] for r in rows} == set(cases)
    [failed] = [r for r in rows if r["status"] == "failed"]
    assert failed["case"] == "broken" and "cannot read image" in failed["error"] and "\n" not in failed["error"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["structure"] in ("vertebra", "disc", "canal") and float(r["volume_ml"]) > 0 for r in ok if r["review"] != EMPTY)
    run = json.loads((out / "run.json").read_text())
    assert run["engine"].startswith("dask.distributed") and run["workers"] == 2
    assert (run["cases"], run["done"], run["failed"], run["skipped"]) == (4, 3, 1, 0)
    assert all(run["per_case"][c]["seconds"] > 0 and run["per_case"][c]["worker"].startswith("tcp://") for c in cases[:3])
    assert not list(out.rglob(".partial-*"))

    (out / "case1.mha").unlink()  # an incomplete case: run again; the complete ones are skipped
    assert main([*args, "--workers", "1", "--resume"]) == 1
    run = json.loads((out / "run.json").read_text())
    assert (run["done"], run["failed"], run["skipped"]) == (1, 1, 2) and run["per_case"]["case1"]["status"] == "ok"
    assert table(out) == rows


def test_killed_worker_leaves_every_case_with_a_mask_or_a_recorded_failure(tmp_path, tiny_model_dir):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    cases = volumes(tmp_path / "in", 8)
    out = tmp_path / "out"
    killed: list[int] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        pids = list(client.run(os.getpid).values())

        def kill_one_once_a_case_is_done() -> None:
            deadline = time.monotonic() + 60
            while not list(out.glob("cohort/*.csv")) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(pids[0], signal.SIGKILL)
            killed.append(len(list(out.glob("cohort/*.csv"))))

        killer = threading.Thread(target=kill_one_once_a_case_is_done)
        killer.start()
        code = main(["-i", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_dir), "--backend", "onnxruntime",
                     "--cluster", cluster.scheduler_address])
        killer.join()
    assert killed and killed[0] < len(cases), "the worker was killed after the run had finished"
    rows = {r["case"]: r for r in table(out)}
    failed = {c for c, r in rows.items() if r["status"] == "failed"}
    assert set(rows) == set(cases) and code == (1 if failed else 0)
    assert all((out / f"{c}.mha").is_file() for c in set(cases) - failed)
    assert all(rows[c]["error"] for c in failed)
    for mask in out.glob("*.mha"):  # no half mask: every mask reads back whole
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(mask))).shape == (48, 64, 12)


def test_rows_of_a_mask():
    labels = np.zeros((10, 40, 30), np.int16)
    labels[2:8, 5:15, 2:14] = 1  # a vertebra
    labels[2:8, 15:18, 2:14] = 201  # a disc below it, no canal behind it
    labels[2:8, 18:28, 2:14] = 102  # a partially visible vertebra
    labels[2:8, 5:28, 16:20] = 100  # the canal
    rows = {r["label"]: r for r in structure_rows("a", labels, (2.0, 1.0, 1.0))}
    assert sorted(rows) == [1, 100, 102, 201]
    assert rows[1]["volume_ml"] == pytest.approx(6 * 10 * 12 * 2 / 1000) and rows[1]["structure"] == "vertebra"
    assert rows[1]["middle_mm"] == pytest.approx(10, abs=1) and rows[1]["review"] == ""
    assert rows[201]["structure"] == "disc" and rows[201]["canal_ap_mm"] == pytest.approx(4, abs=1)
    assert PARTIAL in rows[102]["review"].split(";") and rows[100]["structure"] == "canal"
    thin = labels.copy()
    thin[thin == 100] = 0
    assert NO_CANAL in {r["label"]: r for r in structure_rows("a", thin, (2.0, 1.0, 1.0))}[201]["review"]
    speck = np.zeros_like(labels)
    speck[5, 20, 10] = 3
    assert structure_rows("a", speck, (2.0, 1.0, 1.0))[0]["review"] == NOT_MEASURED
    assert structure_rows("a", np.zeros_like(labels), (2.0, 1.0, 1.0)) == [{"case": "a", "status": "ok", "review": EMPTY}]


@pytest.mark.parametrize("extra", [["--resume"], ["--workers", "0"], ["--workers", "2", "--cluster", "tcp://127.0.0.1:1"]])
def test_cohort_usage_errors(tmp_path, extra):
    volumes(tmp_path / "in", 1)
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *extra]) == 2
    assert not (tmp_path / "out").exists()


def test_missing_extra_is_one_line(tmp_path, monkeypatch, caplog):
    volumes(tmp_path / "in", 1)
    monkeypatch.delitem(sys.modules, "algorithm.cohort", raising=False)
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "2"]) == 2
    assert "pip install 'spider-segment[cohort]'" in caplog.text


def test_plain_run_imports_nothing_of_the_engine(tmp_path, tiny_model_dir):
    [case] = volumes(tmp_path / "in", 1)
    code = ("import sys; from algorithm.cli import main; code = main(sys.argv[1:]); "
            "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'tornado'}))")
    result = subprocess.run([sys.executable, "-c", code, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)],
                            cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert result.stdout.split("\n")[0] == "0 []", result.stderr
    assert (tmp_path / "out" / f"{case}.mha").is_file() and not (tmp_path / "out" / "cohort.csv").exists()
