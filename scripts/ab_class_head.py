"""Logits -> class map, side by side in one process: the ONNX head (algorithm.class_head, ONNX
Runtime) against the numpy resampling + argmax, on the same volumes with the same loaded model.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python scripts/ab_class_head.py VOLUME [VOLUME ...] [--repeats N]

Prints the median predict stage and in-process total per volume and implementation (the first
of the repeats is a warm-up), and how many voxels of the two outputs differ.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("volumes", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    import SimpleITK as sitk

    from algorithm.pipeline import Segmenter, segment_file

    segmenter = Segmenter.load(None, backend="onnxruntime", device="cpu")
    heads = {"onnx head": segmenter.head, "numpy": None}
    with tempfile.TemporaryDirectory() as tmp:
        for volume in args.volumes:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in heads}
            for repeat in range(args.repeats):
                for name, head in heads.items():
                    segmenter.head = head
                    seconds = segment_file(volume, Path(tmp) / f"{name.replace(' ', '_')}.mha", segmenter)
                    if repeat:
                        runs[name].append(seconds)
            for name, times in runs.items():
                print(f"{volume.name:20s} {name:10s} predict {np.median([t['predict'] for t in times]):.3f} s, "
                      f"total {np.median([sum(t.values()) for t in times]):.3f} s")
            outputs = [sitk.GetArrayFromImage(sitk.ReadImage(str(Path(tmp) / f"{n.replace(' ', '_')}.mha"))) for n in heads]
            print(f"{volume.name:20s} voxels that differ: {int((outputs[0] != outputs[1]).sum())} of {outputs[0].size}")


if __name__ == "__main__":
    main()
