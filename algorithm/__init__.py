"""Sagittal lumbar spine MR segmentation (SPIDER): vertebrae, intervertebral discs, spinal canal."""

__version__ = "0.1.0"
