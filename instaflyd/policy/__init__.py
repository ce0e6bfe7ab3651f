"""Policies: when the appliance spends its small box's CPU, decided in one TF-free place.

Each module reads the store (and the config) and returns a typed decision; the daemon, the
command line and the status document ask the same function, so they never disagree.
"""
