"""A cohort on Dask distributed (``spider-segment --workers N`` or ``--cluster ADDRESS``): every
case is one task; each worker holds its models in a worker plugin (the pipeline's routed
``Models``, each loaded once, when a case first needs it); the client follows the futures as they complete and
writes OUT/cohort.csv and OUT/run.json (algorithm.cohort_table). Dask does the scheduling and
reschedules the cases of a worker that died (``distributed.scheduler.allowed-failures``); a case
that raises is not retried (bad input stays bad) but recorded with its one-line reason.

Only the CLI's cohort path imports this module: without ``--workers``/``--cluster`` nothing of
Dask is imported.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import distributed
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from algorithm.backend_base import error_line
from algorithm.cohort_table import complete, failure_row, mask_rows, read_record, write_record, write_summary, write_table
from algorithm.io import InputError, stem

if TYPE_CHECKING:
    from algorithm.dicom import DicomSeries

PLUGIN = "spider-segment-models"

log = logging.getLogger("algorithm")


@dataclass(frozen=True)
class Options:
    """How every case is segmented: the CLI's options."""

    model_dir: Path | None = None  # None: the bundled models
    backend: str = "auto"
    device: str = "auto"
    batch_size: int | None = None
    mirror: bool = False
    qc_dir: Path | None = None
    allow_non_sagittal: bool = False


class WorkerModels(WorkerPlugin):
    """A worker's models (``algorithm.pipeline.Models``): each case goes to the model its slice
    spacing routes to, each model loaded once, when a case first needs it. The model folders are
    read when the worker starts, so that a missing model fails the run at once. A lock lets one
    case at a time use them, however many threads the worker has."""

    def __init__(self, options: Options):
        self.options = options

    def setup(self, worker) -> None:
        from algorithm.pipeline import Models

        o = self.options
        self.models = Models(o.model_dir, o.backend, o.device, o.batch_size, o.mirror)
        self.lock = threading.Lock()


def segment_case(src: Path | DicomSeries, mask: Path, out: Path, options: Options) -> dict:
    """A task: segment one case with its worker's model, then write the case's record (its rows,
    read back from the mask); return its seconds and the worker's address."""
    from algorithm.pipeline import segment_file

    start = time.perf_counter()
    worker = get_worker()
    plugin: WorkerModels = worker.plugins[PLUGIN]
    with plugin.lock:
        segment_file(src, mask, plugin.models, options.qc_dir, allow_non_sagittal=options.allow_non_sagittal)
    write_record(out, stem(mask), mask_rows(stem(mask), mask))
    return {"seconds": round(time.perf_counter() - start, 3), "worker": worker.address}


@contextmanager
def connect(workers: int | None, address: str | None) -> Iterator[Client]:
    """A client of the running cluster at ``address``, else of a local cluster of ``workers``
    single-threaded worker processes (closed afterwards)."""
    quiet = not log.isEnabledFor(logging.DEBUG)
    if quiet:  # the scheduler and the client log to this process; the cases' errors are logged once, below
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if address:
        with Client(address) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL if quiet else logging.INFO) as cluster, Client(cluster) as client:
        yield client


def run_cohort(pairs: list[tuple[Path | DicomSeries, Path]], out: Path, options: Options, workers: int | None = None,
               address: str | None = None, resume: bool = False) -> int:
    """Segment every (input, mask) pair on the cluster; write OUT/cohort.csv and OUT/run.json.
    ``resume``: cases whose mask and record exist are not run again. Return 1 if a case failed."""
    start = time.perf_counter()
    names = {stem(mask): (src, mask) for src, mask in pairs}
    todo = {case: pair for case, pair in names.items() if not (resume and complete(out, case, pair[1]))}
    with connect(workers, address) as client:
        client.register_plugin(WorkerModels(options), name=PLUGIN)
        startup = time.perf_counter() - start
        n_workers = len(client.scheduler_info()["workers"])
        futures = client.map(segment_case, [src for src, _ in todo.values()], [mask for _, mask in todo.values()], out=out,
                             options=options, key=[f"segment-{case}" for case in todo], pure=False)
        per_case = collect(futures, dict(zip((f.key for f in futures), todo)))
    per_case.update({case: {"status": "skipped", "reason": "complete"} for case in names.keys() - todo.keys()})
    rows = [row for case, result in per_case.items()
            for row in ([failure_row(case, result["error"])] if result["status"] == "failed" else read_record(out, case))]
    write_table(out, rows)
    seconds = time.perf_counter() - start
    counts = {status: sum(r["status"] == status for r in per_case.values()) for status in ("ok", "failed", "skipped")}
    write_summary(out, {
        "engine": f"dask.distributed {distributed.__version__}", "cluster": address or "local", "workers": n_workers,  # when the cases were submitted
        "cases": len(names), "done": counts["ok"], "failed": counts["failed"], "skipped": counts["skipped"],
        "startup_s": round(startup, 3), "seconds": round(seconds, 3), "cases_per_minute": round(60 * counts["ok"] / seconds, 2),
        "per_case": dict(sorted(per_case.items())),
    })
    log.info("%d cases: %d segmented, %d failed, %d skipped (complete) in %.1f s on %d workers; table %s",
             len(names), counts["ok"], counts["failed"], counts["skipped"], seconds, n_workers, out / "cohort.csv")
    return 1 if counts["failed"] else 0


def collect(futures: list[distributed.Future], cases: dict[str, str]) -> dict[str, dict]:
    """Each case's result as its future completes (a progress bar over cases on a terminal):
    {"status": "ok", "seconds", "worker"} or {"status": "failed", "error": one line}."""
    from tqdm import tqdm

    results = {}
    for future in tqdm(as_completed(futures), total=len(futures), desc="cases", unit="case", disable=not sys.stderr.isatty()):
        case = cases[future.key]
        if future.status == "error":
            err = future.exception()
            reason = str(err) if isinstance(err, InputError) else error_line(err)
            log.error("%s: failed: %s", case, reason)
            results[case] = {"status": "failed", "error": reason}
        else:
            results[case] = {"status": "ok", **future.result()}
        future.release()
    return results
