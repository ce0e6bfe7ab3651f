"""What the appliance is doing, without TensorFlow: the one status document and where it comes from.

`document` is the document (one frozen dataclass per section); `collect` builds it from the
store, the config and files; `emitter` rebuilds it every few seconds in the daemon and keeps the
latest snapshot for the page, `/api/status`, `/metrics` and the STATUS line; `history` samples
the snapshots into the store's bounded history and reads the charts' series back. `training`
says whether training is due (it moves to the training policy's own home). The weights file has
its home in `instaflyd.weights`, a job's life in `instaflyd.jobs`.
"""
