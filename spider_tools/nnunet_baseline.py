"""nnU-Net v2 3d_fullres as a speed baseline: planned by nnU-Net's own fingerprint extractor and
ExperimentPlanner, built from that plan with random weights (speed does not depend on weights)
and run through ``nnUNetPredictor``. Each function is meant to run in a fresh process (see
spider_tools.benchmark), because nnU-Net reads its paths from environment variables."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import time
from pathlib import Path

DATASET_ID = 990
DATASET_NAME = f"Dataset{DATASET_ID}_SPIDERBench"
CONFIGURATION = "3d_fullres"
TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"
LABELS = {"background": 0, "vertebra": 1, "disc": 2, "canal": 3}


def unavailable_reason() -> str | None:
    """Why nnU-Net v2 cannot be used here, or None when it can."""
    if importlib.util.find_spec("nnunetv2") is None:
        return "nnunetv2 is not installed (pip install nnunetv2, keeping the installed torch)"
    return None


def _use_root(root: Path) -> None:
    """Point nnU-Net's raw/preprocessed/results folders into ``root`` (before importing it)."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(folder)


def model_folder(root: str | Path) -> Path:
    """Where ``prepare`` puts the nnU-Net model (the folder nnUNetPredictor loads)."""
    return Path(root) / "nnUNet_results" / DATASET_NAME / f"{TRAINER}__{PLANS}__{CONFIGURATION}"


def prepare(root: str | Path, cases: list[tuple[str, str]], seed: int = 0) -> dict:
    """Plan 3d_fullres from (image, class-label) file pairs with nnU-Net's planner, build the planned
    network with random weights and save it as an nnU-Net model folder under ``root``.

    Returns a summary of the plan (target spacing, patch size, batch size, stages)."""
    root = Path(root)
    _use_root(root)
    raw = root / "nnUNet_raw" / DATASET_NAME
    raw.mkdir(parents=True, exist_ok=True)
    dataset_json = {
        "channel_names": {"0": "MRI"},
        "labels": LABELS,
        "numTraining": len(cases),
        "file_ending": ".mha",
        "dataset": {f"case{i:03d}": {"images": [str(image)], "label": str(label)} for i, (image, label) in enumerate(cases)},
    }
    (raw / "dataset.json").write_text(json.dumps(dataset_json, indent=1))

    with contextlib.redirect_stdout(open(os.devnull, "w")):
        import torch
        from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset, plan_experiment_dataset
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        extract_fingerprint_dataset(DATASET_ID, num_processes=1, verbose=False, show_progress_bar=False)
        plans, _ = plan_experiment_dataset(DATASET_ID)
    plans_manager = PlansManager(plans)
    configuration = plans_manager.get_configuration(CONFIGURATION)
    torch.manual_seed(seed)
    network = nnUNetTrainer.build_network_architecture(plans_manager, configuration, 1, len(LABELS), enable_deep_supervision=False)

    folder = model_folder(root)
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    dataset_json.pop("dataset")
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    checkpoint = {
        "network_weights": network.state_dict(),
        "init_args": {"plans": plans, "configuration": CONFIGURATION, "fold": 0, "dataset_json": dataset_json},
        "trainer_name": TRAINER,
        "inference_allowed_mirroring_axes": (0, 1, 2),  # nnUNetTrainer's default for 3D
        "current_epoch": 0,
    }
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return {
        "planned_from": len(cases),
        "spacing": [round(float(s), 4) for s in configuration.spacing],
        "patch_size": [int(p) for p in configuration.patch_size],
        "batch_size": int(configuration.batch_size),
        "stages": len(configuration.network_arch_init_kwargs["features_per_stage"]),
        "parameters": int(sum(p.numel() for p in network.parameters())),
    }


def predict(root: str | Path, image: str | Path, out_dir: str | Path, mirroring: bool) -> dict:
    """Segment one volume with nnUNetPredictor on the CPU (one fold, nnU-Net's default tile step
    0.5 and Gaussian weighting); return seconds for imports, model loading and prediction
    (reading, preprocessing, sliding window, resampling back and writing)."""
    start = time.perf_counter()
    _use_root(Path(root))
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        imported = time.perf_counter()
        predictor = nnUNetPredictor(use_mirroring=mirroring, perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(model_folder(root)), use_folds=(0,))
        loaded = time.perf_counter()
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        out = Path(out_dir) / Path(image).name.split(".")[0]
        predictor.predict_from_files_sequential([[str(image)]], [str(out)], save_probabilities=False, overwrite=True)
        done = time.perf_counter()
    return {"import_s": imported - start, "load_s": loaded - imported, "predict_s": done - loaded, "threads": torch.get_num_threads()}
