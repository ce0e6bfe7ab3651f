"""Instafly's store: one SQLite database plus a folder of content-addressed image files."""

from instaflyd.store.database import Database, StoreError
from instaflyd.store.images import ImageFiles, StoredImage
from instaflyd.store.records import AccountRecord, PostRecord

__all__ = [
    "AccountRecord",
    "Database",
    "ImageFiles",
    "PostRecord",
    "StoreError",
    "StoredImage",
]
