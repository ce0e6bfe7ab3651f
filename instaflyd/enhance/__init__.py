"""Enhancement: raise a photo's predicted score with natural edits (or the 2017 pixel method).

The modules: `io` (read and write images), `filters` (the differentiable edits), `edits` (the
edit search), `pixels` (pixel ascent), `noise` (`generate`) and `pipeline` (one photo, start to
finish; its file names and sidecar come from `instaflyd.jobs.outputs`). This file imports none
of them: most load TensorFlow, and importing `instaflyd.enhance.io` must not.
"""
