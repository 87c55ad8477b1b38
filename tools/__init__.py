"""Developer tools of this repository (not part of the siemgate package)."""
