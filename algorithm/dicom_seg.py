"""DICOM Segmentation output (--format dicom-seg): the mask of one DICOM series as one SEG object
that references the series' instances, with one binary segment per structure, named as SPIDER
names it ("vertebra 3", "disc 203", "spinal canal") and coded with SNOMED CT. Written with
highdicom, imported only here (the optional extra ``dicom``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from algorithm import __version__
from algorithm.dicom import DicomSeries
from algorithm.labels import CANAL_LABEL, PARTIAL_OFFSET, is_disc, is_vertebra

SERIES_NUMBER_OFFSET = 1000  # the SEG's SeriesNumber: the source's plus this
# SNOMED CT codes of the segmented structures (DICOM CID 7150 category "Anatomical Structure")
CATEGORY = ("91723000", "SCT", "Anatomical Structure")
VERTEBRA, DISC, CANAL = ("51282000", "SCT", "Vertebra"), ("360499006", "SCT", "Intervertebral disc"), ("61853006", "SCT", "Spinal canal")


def segment_name(value: int) -> str:
    """The name of a SPIDER label value: 'vertebra 3', 'vertebra 103 (partially visible)',
    'disc 203', 'spinal canal'."""
    if value == CANAL_LABEL:
        return "spinal canal"
    if is_disc(value):
        return f"disc {value}"
    if is_vertebra(value):
        return f"vertebra {value}" + " (partially visible)" * (value > PARTIAL_OFFSET)
    raise ValueError(f"label {value} is not in the SPIDER scheme")


def structure_code(value: int) -> tuple[str, str, str]:
    """SNOMED CT (code, scheme, meaning) of the structure a SPIDER label value stands for."""
    return CANAL if value == CANAL_LABEL else DISC if is_disc(value) else VERTEBRA


def write_seg(mask: np.ndarray, series: DicomSeries, path: str | Path) -> Path:
    """Write the SPIDER instance ``mask`` (k, j, i: the series' slices in the order of
    DicomSeries.stack(), rows, columns) as a binary DICOM SEG at ``path``, atomically."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from algorithm.io import atomic_path

    logging.getLogger("highdicom").setLevel(logging.WARNING)  # not a line per copied DICOM module

    ordered, _ = series.stack()
    if mask.shape != (len(ordered), *ordered[0].size[::-1]):
        raise ValueError(f"{series}: mask of shape {mask.shape} does not match the series' {len(ordered)} slices of {ordered[0].size[::-1]}")
    values = [int(v) for v in np.unique(mask) if v]
    if not values:
        raise ValueError(f"{series}: nothing was segmented, so there is no DICOM SEG to write")
    sources = [pydicom.dcmread(s.path, stop_before_pixels=True) for s in ordered]
    algorithm = hd.AlgorithmIdentificationSequence(name="spider-segment", family=codes.cid7162.ArtificialIntelligence, version=__version__)
    category = hd.sr.CodedConcept(*CATEGORY)
    segments = [hd.seg.SegmentDescription(number, segment_name(value), category, hd.sr.CodedConcept(*structure_code(value)),
                                          hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm)
                for number, value in enumerate(values, 1)]
    label_map = np.searchsorted(values, mask).astype(np.uint16) + 1
    label_map[mask == 0] = 0
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=label_map, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=int(sources[0].get("SeriesNumber") or 0) + SERIES_NUMBER_OFFSET,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="spider-segment", manufacturer_model_name="spider-segment 2D U-Net",
        software_versions=__version__, device_serial_number="none", series_description=f"spider-segment {series.name}"[:64],
        content_label="SPINE", content_description="vertebrae, intervertebral discs, spinal canal")
    path = Path(path)
    with atomic_path(path, ".dcm") as tmp:
        seg.save_as(tmp)
    return path
