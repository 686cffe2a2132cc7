"""The predict stage's variants side by side in one process, on the same volumes with the same
loaded model:

- "device": batches built on the network's device (algorithm.resident: the context graph and
  I/O binding for ONNX Runtime, torch for PyTorch; the default on CUDA, and for ONNX Runtime on
  the CPU too);
- "host, onnx head": batches stacked on the host, logits -> class map by the ONNX head
  (algorithm.class_head);
- "host, numpy": batches stacked on the host, logits resampled and argmaxed with numpy.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python scripts/ab_predict.py VOLUME [VOLUME ...]
        [--synthetic t2,t1,t2_SPACE] [--backend onnxruntime|torch] [--device cpu|cuda] [--repeats N]

``--synthetic`` adds the benchmark's synthetic volumes (real SPIDER geometries). Prints the median
predict stage and in-process total per volume and variant (the first of the repeats is a
warm-up, the variants alternate), and how many voxels of each output differ from the first
variant's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("volumes", nargs="*", type=Path)
    parser.add_argument("--synthetic", default="", help="comma-separated synthetic volumes of spider_tools.synthetic.GEOMETRIES")
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    import SimpleITK as sitk

    from spider_tools.benchmark import synthetic_volumes
    from algorithm.pipeline import Models, segment_file
    from algorithm.resident import TorchResident

    segmenter = Models(None, args.backend, args.device)
    # PyTorch on the CPU loads without its device path (slower there): build it to compare
    device = segmenter.resident or (TorchResident(segmenter.backend) if args.backend == "torch" else None)
    variants = {"device": (segmenter.head, device), "host, onnx head": (segmenter.head, None), "host, numpy": (None, None)}
    files = {name: name.replace(", ", "_").replace(" ", "_") + ".mha" for name in variants}
    print(f"backend {segmenter.backend.name}")
    with tempfile.TemporaryDirectory() as tmp:
        names = [n for n in args.synthetic.split(",") if n]
        volumes = list(args.volumes) + [image for image, _ in synthetic_volumes(Path(tmp) / "synthetic", names)]
        for volume in volumes:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
            for repeat in range(args.repeats):
                for name, (head, resident) in variants.items():
                    segmenter.head, segmenter.resident = head, resident
                    seconds = segment_file(volume, Path(tmp) / files[name], segmenter).seconds
                    if repeat:
                        runs[name].append(seconds)
            outputs = {name: sitk.GetArrayFromImage(sitk.ReadImage(str(Path(tmp) / files[name]))) for name in variants}
            first = next(iter(outputs.values()))
            for name, times in runs.items():
                print(f"{volume.name:20s} {name:16s} predict {np.median([t['predict'] for t in times]):.3f} s, "
                      f"total {np.median([sum(t.values()) for t in times]):.3f} s, voxels differing from the first: {int((outputs[name] != first).sum())} of {first.size}")


if __name__ == "__main__":
    main()
