"""odecam: real-time motion transfer (Self-appearance-aided Differential Evolution)."""
__version__ = "0.1.0"
