"""The tuning constants of post-processing, in one place (mm unless named otherwise)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Params:
    """Every threshold of post-processing; ``P`` holds the values in use."""

    coarse_mm: float = 1.5  # grid spacing of the seed / watershed work
    core_mm: float = 3.0  # body seeds: at least this far from any non-vertebra voxel
    cut_mm: float = 3.0  # half-thickness of the band cut out of the seeds along each disc plane
    footprint_mm: float = 10.0  # the band reaches this far beyond a disc's rim (cores only, so generous)
    side_mm: float = 5.0  # depth of the slab beside each disc searched for an unseeded vertebra
    side_min_mm3: float = 500.0  # an unseeded slab this large becomes a seed
    seed_fraction: float = 0.05  # seeds below this fraction of the largest seed are not bodies
    attach_mm: float = 8.0  # seedless vertebra pieces this close to a vertebra become part of it
    canal_fraction: float = 0.1  # canal pieces below this fraction of the largest piece are dropped
    canal_line_mm: float = 15.0  # a canal piece whose centre is further than this from the main canal's line is dropped
    contact_mm: float = 5.0  # a vertebra this close to a disc touches it (one link of the chain)
    front_mm: float = 5.0  # kept vertebra pieces lie at most this far in front of the discs' front line ...
    posterior_mm: float = 65.0  # ... and at most this far behind their back line (spinous process tips)
    lateral_mm: float = 50.0  # ... and this far to either side of the chain's midline (transverse processes)
    level_mm: float = 30.0  # ... and this far above or below the chain's ends (one more vertebra)
    cone: float = 0.5  # beyond the chain's end discs, the band widens by this many mm per mm (up to LINE_MM)
    canal_mm: float = 15.0  # the chain's discs lie this close to the canal (where there is one)
    disc_depth_mm: float = 12.0  # a disc of the chain is at least this deep (anterior-posterior); skin strips are thinner
    join_mm: float = 10.0  # a group joins the chain if its discs lie within this margin of the chain's band
    same_level_mm: float = 8.0  # two disc pieces touching the same bodies merge when their centres are this close in height
    line_mm: float = 30.0  # consecutive discs of the chain lie this close anterior-posterior ...
    step_mm: float = 12.0  # ... and this far apart in height (a missed disc between them allowed)
    max_step_mm: float = 80.0  # ... and this far apart in height (a missed disc between them allowed)
    trim_mm: float = 10.0  # chain vertebrae lose what lies further than this in front of the discs' front line
    canal_length_mm: float = 40.0  # a canal component shorter than this (along the spine) does not guide the chain
    body_depth_mm: float = 40.0  # without discs, bodies are taken to lie this far in front of the canal's front wall
    min_links: int = 2  # a chain with fewer links (body-disc-body, or a vertebra on the canal) is too short to judge the rest by
    body_fraction: float = 0.1  # a chain vertebra with less body (in front of the canal) than this fraction of the median is an arch
    piece_body_fraction: float = 0.25  # a vertebra off the chain with this fraction of the median vertebra (or body) is a body
    sacrum_ratio: float = 1.3  # what lies below the lowest disc, cut by the inferior edge, and no taller than this many bodies is a vertebra
    disc_fraction: float = 0.1  # a disc piece off the chain smaller than this fraction of the median chain disc is dropped
    split_ratio: float = 1.6  # a body this many times taller than the median body is cut
    merge_ratio: float = 1.3  # two adjacent bodies without a disc between them, together at most this tall (times the median body), are one
    same_body_ratio: float = 1.5  # two vertebrae touching a disc from the same side merge if together at most this tall


P = Params()
