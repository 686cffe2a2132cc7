"""Records of post-processing actions, for the QC JSON."""

from __future__ import annotations

import numpy as np

from .parts import Parts


def record(action: str, kind: str, ident: int, parts: Parts, mm3: float | None = None, **extra) -> dict:
    """A record of an action on a piece; its volume from the coarse grid unless ``mm3`` is given."""
    volume = float(parts.sizes[ident]) if mm3 is None else mm3
    return {"action": action, "class": kind, "id": int(ident), "volume_ml": round(volume / 1000, 3),
            "centre_mm": [round(float(c), 1) for c in parts.centres[ident]], **extra}


def final_record(record: dict, labels: np.ndarray, verts: np.ndarray, discs: np.ndarray, offset: np.ndarray) -> dict:
    """A record with crop ids (of ``verts`` or the disc ids ``discs``) replaced by final labels and positions moved to the whole volume."""
    out = dict(record)

    def label_of(ident):
        hit = labels[(verts if out.get("class") == "vertebra" else discs) == ident]
        return int(hit[0]) if hit.size else None

    if out["action"] == "trimmed":
        out["label"] = label_of(out.pop("id"))
    for key in ("into", "to"):
        if key in out:
            out[key] = [label_of(i) for i in out[key]] if isinstance(out[key], list) else label_of(out[key])
    if "centre_mm" in out:
        out["centre_mm"] = [round(float(c + o), 1) for c, o in zip(out["centre_mm"], offset)]
    if out["action"] in ("dropped", "reassigned", "merged", "split"):
        out.pop("id", None)
    return out

