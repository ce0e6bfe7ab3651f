"""Benchmark: the fixed-path family parsers (before the walk) against the shape walk, side by side.

One process. The old parsers are loaded from git history (`instaflyd/capture/parsers.py` at
OLD_COMMIT, the last commit before the walk) into a temporary module; the walk is today's
`instaflyd.capture.parsers`. Each reads the same generated documents, in both dialects:

- `graphql`: a web_profile_info response (`data.user.edge_owner_to_timeline_media.edges[]`) of
  GraphImage nodes from the 2022 sample;
- `v1`: a feed response (`items[]`) of v1 photos from the 2022 timeline sample;

each node renumbered and trimmed to the fields a post page carries (ids, shortcode, likes,
comments, owner, the image candidates), at 10,000 and 100,000 posts. Timed: `parse_document` on
the decoded document (JSON decoding, the same for both, is printed apart), in CPU seconds of
the process (`time.process_time`: the VM is shared, wall time would measure the neighbours).
Printed for each: CPU seconds, MB of JSON per second, posts per second, the ratio old/walk, and
the walk's peak memory (tracemalloc, in a separate run).

    .venv/bin/python bench/parse_walker.py [--posts 10000 100000] [--old-max 100000]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from instaflyd.capture import parsers as walk  # noqa: E402

OLD_COMMIT = "b56da5f"
SAMPLES = REPO / "tests" / "fixtures" / "instagram" / "pgrimaud"
GRAPH_KEYS = (
    "__typename", "id", "shortcode", "dimensions", "display_url", "display_resources", "is_video",
    "edge_media_to_comment", "taken_at_timestamp", "edge_liked_by", "edge_media_preview_like",
    "owner", "thumbnail_src", "accessibility_caption",
)  # fmt: skip
V1_KEYS = (
    "taken_at", "pk", "id", "media_type", "code", "comment_count", "user", "image_versions2",
    "original_width", "original_height", "like_count", "product_type", "caption",
)  # fmt: skip


def old_parsers() -> types.ModuleType:
    """The family parsers as they were before the walk, from git history."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{OLD_COMMIT}:instaflyd/capture/parsers.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("old_parsers")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, "old_parsers.py", "exec"), module.__dict__)
    return module


def _sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def graphql_document(posts: int) -> dict[str, Any]:
    profile = _sample("web_profile_info_2022-06_full.json")
    user = profile["data"]["user"]
    node = user["edge_owner_to_timeline_media"]["edges"][5]["node"]
    template = {key: node[key] for key in GRAPH_KEYS if key in node}
    edges = []
    for n in range(posts):
        item = copy.deepcopy(template)
        item.update(id=str(10**15 + n), shortcode=f"B{n:09d}")
        item["edge_liked_by"] = {"count": n % 5000}
        edges.append({"node": item})
    user["edge_owner_to_timeline_media"] = {"count": posts, "edges": edges}
    user.pop("edge_felix_video_timeline", None)
    return profile


def v1_document(posts: int) -> dict[str, Any]:
    timeline = _sample("feed_timeline_v1_2022-08.json")
    media = timeline["feed_items"][1]["media_or_ad"]
    template = {key: media[key] for key in V1_KEYS if key in media}
    items = []
    for n in range(posts):
        item = copy.deepcopy(template)
        item.update(pk=10**15 + n, id=f"{10**15 + n}_1", code=f"C{n:09d}", like_count=n % 5000)
        items.append(item)
    return {"items": items, "num_results": posts, "more_available": True, "status": "ok"}


def timed(parse, document: Any, path: str) -> tuple[float, int]:
    start = time.process_time()
    parsed = parse(document, path)
    return time.process_time() - start, len(parsed.posts)


def walk_peak_mb(document: Any, path: str) -> float:
    tracemalloc.start()
    walk.parse_document(document, path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--posts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--old-max", type=int, default=100_000, help="skip the old parsers above this size"
    )
    args = parser.parse_args()
    old = old_parsers()
    dialects = (
        ("graphql", graphql_document, "/api/v1/users/web_profile_info/"),
        ("v1", v1_document, "/api/v1/feed/timeline/"),
    )
    print(f"{'document':>16} {'MB':>7} {'decode s':>9} | {'parser':>6} {'s':>8} {'MB/s':>8} "
          f"{'posts/s':>10} | {'old/walk':>8} {'walk peak MB':>12}")  # fmt: skip
    for posts in args.posts:
        for dialect, build, path in dialects:
            body = json.dumps(build(posts)).encode()
            megabytes = len(body) / 1e6
            start = time.process_time()
            document = json.loads(body)
            decode = time.process_time() - start
            walk_s, walk_posts = timed(walk.parse_document, document, path)
            assert walk_posts == posts, (dialect, walk_posts)
            rows = [("walk", walk_s)]
            if posts <= args.old_max:
                old_s, old_posts = timed(old.parse_document, document, path)
                assert old_posts == posts, (dialect, old_posts)
                rows.insert(0, ("old", old_s))
            ratio = f"{rows[0][1] / walk_s:8.1f}" if len(rows) == 2 else f"{'-':>8}"
            peak = walk_peak_mb(document, path)
            for name, seconds in rows:
                label = f"{dialect} {posts // 1000}k"
                tail = f"| {ratio} {peak:12.0f}" if name == "walk" else "|"
                rates = f"{megabytes / seconds:8.1f} {posts / seconds:10.0f}"
                print(f"{label:>16} {megabytes:7.1f} {decode:9.2f} | {name:>6} {seconds:8.2f} "
                      f"{rates} {tail}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
