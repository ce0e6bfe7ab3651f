"""Instafly: a home-network appliance that learns what makes an Instagram photo popular."""

__version__ = "0.1.0"
