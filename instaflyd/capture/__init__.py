"""Capture: Instagram responses seen by the proxy or read from dump files -> posts and images.

Nothing here imports TensorFlow: the proxy must stay small and start in seconds.
"""
