"""Enhancement: raise a photo's predicted score with natural edits (or the 2017 pixel method).

The modules: `io` (read and write images), `filters` (the differentiable edits), `edits` (the
edit search), `pixels` (pixel ascent), `noise` (`generate`), `outputs` (file names and sidecars)
and `pipeline` (one photo, start to finish). This file imports none of them: most load
TensorFlow, and importing `instaflyd.enhance.outputs` must not.
"""
