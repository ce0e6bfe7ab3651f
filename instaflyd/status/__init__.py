"""What the appliance is doing, without TensorFlow: what the supervisor, page and `stats` read.

`training` says whether training is due and why not; `weights` whether the ImageNet weights file
is there and genuine. Both read only the store and files, so the supervisor and the page can ask
every few seconds without loading the model (the import contracts in pyproject.toml check it).
"""
