"""Data utilities shared by offline preparation (``odecam prepare-faces``) and training datasets."""
