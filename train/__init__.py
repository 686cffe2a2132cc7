"""Training of the 2D U-Net on data in SPIDER layout."""
