"""What the appliance is doing, without TensorFlow: the one status document and where it comes from.

`document` is the document (one frozen dataclass per section); `collect` builds it from the
store, the config and files; `emitter` rebuilds it every few seconds in the daemon and keeps the
latest snapshot for the page, `/api/status`, `/metrics` and the STATUS line; `history` samples
the snapshots into the store's bounded history and reads the charts' series back. The rules it
reports on have homes of their own: when to train in `instaflyd.policy`, the weights file in
`instaflyd.weights`, a job's life in `instaflyd.jobs`.
"""
