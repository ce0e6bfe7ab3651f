"""The ImageNet VGG16 weights file, without TensorFlow: every rule about it in one place.

`file` turns the `model.weights` setting into a path and tells a genuine copy (size and md5);
`status` says whether the weights are there, in a sentence for people; `receive` takes in a
copy (`instaflyd weights import`, the page's upload); `fetch` downloads it, resuming a cut
download, and `progress` is the record of how far a download got (`weights/fetch.json`). The
model (`instaflyd.model.backbone`) only asks `file.weights_file` which file to load.
"""
