"""Enhancement: raise a photo's predicted score with natural edits (or the 2017 pixel method).

The modules: `io` (read and write images), `filters` (the differentiable edits), `edits` (the
edit search), `pixels` (pixel ascent), `noise` (`generate`), `outputs` (file names and sidecars)
and `pipeline` (one photo, start to finish: `enhance_file`).

This package's own import loads nothing: `pipeline` and the search modules bring TensorFlow, so
they are imported by name only where a model is used (the worker's enhancer process, the
`enhance` command), never by the worker's TensorFlow-free loop, which needs only `outputs`.
"""
