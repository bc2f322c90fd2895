"""odecam: real-time motion transfer (Self-appearance-aided Differential Evolution)."""
__version__ = "0.1.0"

import os as _os

# Idle OpenMP threads sleep instead of spin-waiting, so a busy machine does not starve the model's other
# threads (see odecam.engine.threads). libgomp reads this when torch loads it: it must be set before.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
