"""The drop folder: watch it, queue each new photo once, enhance it in the worker process."""
