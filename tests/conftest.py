"""Suite-wide settings, applied before any test module imports torch."""

import os

# Passive OpenMP waiting, as the command line sets it: spinning threads make PyTorch ~10x slower
# whenever another process (a renderer worker, a subprocess under test) shares the two cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
