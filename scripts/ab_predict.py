"""The predict stage's variants side by side in one process, on the same volumes with the same
loaded model (ONNX Runtime):

- "device": batches built on the network's device (algorithm.resident), the default;
- "host, onnx head": batches stacked on the host, logits -> class map by the ONNX head
  (algorithm.class_head);
- "host, numpy": batches stacked on the host, logits resampled and argmaxed with numpy.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python scripts/ab_predict.py VOLUME [VOLUME ...] [--repeats N] [--device cpu|cuda]

Prints the median predict stage and in-process total per volume and variant (the first of the
repeats is a warm-up, the variants alternate), and how many voxels of each output differ from
the first variant's.
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
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()

    import SimpleITK as sitk

    from algorithm.pipeline import Segmenter, segment_file

    segmenter = Segmenter.load(None, backend="onnxruntime", device=args.device)
    variants = {"device": (segmenter.head, segmenter.resident), "host, onnx head": (segmenter.head, None), "host, numpy": (None, None)}
    files = {name: name.replace(", ", "_").replace(" ", "_") + ".mha" for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for volume in args.volumes:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
            for repeat in range(args.repeats):
                for name, (head, resident) in variants.items():
                    segmenter.head, segmenter.resident = head, resident
                    seconds = segment_file(volume, Path(tmp) / files[name], segmenter)
                    if repeat:
                        runs[name].append(seconds)
            outputs = {name: sitk.GetArrayFromImage(sitk.ReadImage(str(Path(tmp) / files[name]))) for name in variants}
            first = next(iter(outputs.values()))
            for name, times in runs.items():
                print(f"{volume.name:20s} {name:16s} predict {np.median([t['predict'] for t in times]):.3f} s, "
                      f"total {np.median([sum(t.values()) for t in times]):.3f} s, voxels differing from the first: {int((outputs[name] != first).sum())} of {first.size}")


if __name__ == "__main__":
    main()
