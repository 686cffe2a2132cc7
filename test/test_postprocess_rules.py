"""Post-processing rules of issue 21, each on a small constructed class map that today's code got wrong."""

from __future__ import annotations

import numpy as np
from test_postprocess import SPACING, dice, run, spine, vertebra_labels

from algorithm.config import Config
from algorithm.labels import CANAL, DISC, VERTEBRA
from algorithm.postprocess import postprocess


def test_stray_canal_in_front_of_the_bodies_neither_splits_them_nor_becomes_canal():
    classes, expected = spine()
    classes, expected = (np.pad(a, ((0, 0), (0, 0), (30, 0))) for a in (classes, expected))  # bodies at depth 38-68 mm
    classes[6:10, 5:-5, 24:30] = CANAL  # a canal-labelled tube 8 mm in front of the bodies, along the spine
    log: list[dict] = []
    out = postprocess(classes, SPACING, Config(), log)
    assert vertebra_labels(out) == [1, 2, 3, 4]
    for k in range(1, 5):
        assert dice(out == k, expected == k) > 0.95
    np.testing.assert_array_equal(out == 100, expected == 100)
    assert any(r["action"] == "dropped" and r["class"] == "canal" for r in log)
