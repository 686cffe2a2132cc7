"""Post-processing returns the reference's chain on 396 perturbed class maps of the 33 real SPIDER
reference masks (test/perturb.py: 6 kinds of perturbation, 2 seeds each): the same number of
vertebrae and discs, one numbering offset, no crash. About 45 s on two idle cores."""

from __future__ import annotations

import pytest
from conftest import shared_data

# The one known miss: the top of 65_t2_SPACE is a vertebra cut by the field of view down to its arch,
# with its disc above that arch's centre; with the pedicles cut, that disc is numbered one too high.
KNOWN = {"posterior": {"65_t2_SPACE 0", "65_t2_SPACE 1"}}


def test_perturbed_reference_masks_keep_their_chain():
    pytest.importorskip("SimpleITK")
    from perturb import run

    from algorithm.postprocess import postprocess

    failures = run(postprocess, shared_data("spider-masks"), seeds=2, unperturbed=False)
    unexpected = {kind: [f for f in fails if f.split(":")[0] not in KNOWN.get(kind, set())] for kind, fails in failures.items()}
    assert not any(unexpected.values()), unexpected
