"""Enhancement: raise a photo's predicted score with natural edits (or the 2017 pixel method).

The worker and the `enhance` command use these names; the modules behind them are `io` (read and
write images), `filters` (the differentiable edits), `edits` (the edit search), `pixels` (pixel
ascent), `noise` (`generate`), `outputs` (file names and sidecars) and `pipeline` (one photo, start
to finish).
"""

from instaflyd.enhance.io import RejectedImage
from instaflyd.enhance.outputs import output_paths, write_sidecar
from instaflyd.enhance.pipeline import EnhanceResult, enhance_file, forget_compiled

__all__ = [
    "EnhanceResult",
    "RejectedImage",
    "enhance_file",
    "forget_compiled",
    "output_paths",
    "write_sidecar",
]
