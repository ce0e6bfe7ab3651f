"""`instaflyd import`: mitmproxy dump files -> the store, through the proxy's own parsers.

Importing is idempotent: posts are upserted by id and images are content-addressed, so a file
read twice adds nothing the second time. A corrupt or truncated file stops that file with a clear
error naming it; every flow read before the damage is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from mitmproxy import exceptions, http, io

from instaflyd.capture.counts import CaptureCounts
from instaflyd.capture.flows import captured_response, path_without_query
from instaflyd.capture.ingest import CaptureError, Ingester
from instaflyd.capture.matching import PendingImages
from instaflyd.config import Config
from instaflyd.store import Database, ImageFiles
from instaflyd.store.events import log_event
from instaflyd.store.stats import count

log = logging.getLogger("instafly.import")


@dataclass
class ImportSummary:
    """The `import --json` document."""

    flows: int = 0
    posts_new: int = 0
    posts_updated: int = 0
    accounts: int = 0  # accounts that were not in the store before
    images_stored: int = 0
    images_unmatched: int = 0  # valid images no post in the store names
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class ImportResult:
    summary: ImportSummary
    file_errors: list[str]  # one line each: files that could not be read to the end
    parse_errors: list[str]  # one line each: responses the parsers could not read


def import_flow_files(config: Config, paths: Iterable[Path]) -> ImportResult:
    file_errors: list[str] = []
    parse_errors: list[str] = []
    outcome = CaptureCounts()
    summary = ImportSummary()
    proxy = config.proxy
    with Database(config.db_path) as db:
        accounts_before = count(db.conn, "accounts")
        # Images wait for their JSON as in the proxy, but through the whole import.
        pending = PendingImages(
            proxy.pending_images_max, float("inf"), proxy.pending_images_max_bytes
        )
        ingester = Ingester(
            db, ImageFiles(config.images_dir), pending, proxy.max_body_bytes, imported=True
        )
        for path in paths:
            for flow in _http_flows(path, file_errors):
                summary.flows += 1
                captured = captured_response(flow, proxy.max_body_bytes)
                if captured is None:
                    continue
                try:
                    outcome += ingester.ingest(captured)
                except CaptureError as exc:
                    where = captured.host + path_without_query(captured.path)
                    parse_errors.append(f"{path}: {where}: {exc}")
                    with db.transaction() as conn:
                        log_event(conn, "import", "warning", "parse_error", parse_errors[-1])
        summary.accounts = count(db.conn, "accounts") - accounts_before
    summary.posts_new = outcome.posts_new
    summary.posts_updated = outcome.posts_updated
    summary.images_stored = outcome.images_stored
    summary.images_unmatched = outcome.images_unmatched + len(pending)
    summary.errors = len(file_errors) + len(parse_errors)
    return ImportResult(summary, file_errors, parse_errors)


def _http_flows(path: Path, problems: list[str]) -> Iterator[http.HTTPFlow]:
    """The file's HTTP flows; a damaged file ends early with a problem naming it."""
    read = 0
    try:
        with path.open("rb") as handle:
            for flow in io.FlowReader(handle).stream():
                read += 1
                if isinstance(flow, http.HTTPFlow):
                    yield flow
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror or exc}")
    except exceptions.FlowReadException as exc:
        problems.append(
            f"{path}: not a mitmproxy dump, or corrupt or truncated after {read} flows ({exc})"
        )
