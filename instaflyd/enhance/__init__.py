"""Enhancement: raise a photo's predicted score with natural edits (or the 2017 pixel method)."""
