"""The database schema as an append-only list of forward migrations.

`PRAGMA user_version` holds the number of migrations applied. A migration is never edited once
released: a change is a new entry at the end. Each runs in its own write transaction, so several
processes opening an old database at once apply it exactly once.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

# v1: what capture needs: accounts, posts, content-addressed images, image file names, events.
V1_CAPTURE = """
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,            -- owner pk
    username        TEXT,
    full_name       TEXT,
    follower_count  INTEGER,                     -- latest seen; NULL until a profile is seen
    first_seen      REAL NOT NULL,
    last_seen       REAL NOT NULL
);
CREATE TABLE images (
    sha256     TEXT PRIMARY KEY,                 -- file images/<sha[:2]>/<sha>.<ext>
    ext        TEXT NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    stored_at  REAL NOT NULL
);
CREATE TABLE posts (
    id             TEXT PRIMARY KEY,             -- media pk as text ("3001_4004" -> "3001")
    shortcode      TEXT,
    owner_id       TEXT REFERENCES accounts(id),
    media_type     TEXT NOT NULL CHECK (media_type IN ('photo', 'carousel', 'video', 'reel')),
    like_count     INTEGER,                      -- NULL when hidden, never 0 for hidden
    comment_count  INTEGER,
    taken_at       INTEGER,                      -- unix seconds
    image_url      TEXT,                         -- largest candidate named by the JSON
    image_sha256   TEXT REFERENCES images(sha256),
    source         TEXT,                         -- endpoint family that last described it
    first_seen     REAL NOT NULL,
    last_seen      REAL NOT NULL
);
CREATE INDEX posts_owner ON posts(owner_id);
CREATE INDEX posts_image ON posts(image_sha256);
CREATE TABLE image_names (
    name     TEXT PRIMARY KEY,                   -- CDN file name, e.g. 12345_678_n.jpg
    post_id  TEXT NOT NULL REFERENCES posts(id) ON DELETE CASCADE
);
CREATE INDEX image_names_post ON image_names(post_id);
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    ts         REAL NOT NULL,
    component  TEXT NOT NULL,
    level      TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warning', 'error')),
    kind       TEXT NOT NULL,
    message    TEXT NOT NULL
);
CREATE INDEX events_ts ON events(ts);
"""

# v2: the model: trained versions and training runs with their progress.
V2_MODEL = """
CREATE TABLE model_versions (
    version                INTEGER PRIMARY KEY,
    created                REAL NOT NULL,
    path                   TEXT NOT NULL,        -- models/vNNNN
    samples                INTEGER NOT NULL,     -- labelled posts used (train + validation)
    labelled_total         INTEGER NOT NULL,     -- labelled posts in the store at training time
    metrics                TEXT NOT NULL,        -- JSON
    val_srcc               REAL,
    val_pairwise_accuracy  REAL,
    promoted               INTEGER NOT NULL DEFAULT 0,
    promoted_at            REAL
);
CREATE TABLE training_runs (
    id          INTEGER PRIMARY KEY,
    started     REAL NOT NULL,
    finished    REAL,
    heartbeat   REAL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    pid         INTEGER,
    epoch       INTEGER NOT NULL DEFAULT 0,
    epochs      INTEGER,
    loss        REAL,
    metrics     TEXT,                            -- JSON of the latest validation metrics
    version     INTEGER REFERENCES model_versions(version),
    message     TEXT
);
-- The label rule: photo posts (and carousels, by their cover) with the like count,
-- the owner's follower count and the image all known.
CREATE VIEW labelled_posts AS
SELECT p.id, p.owner_id, p.like_count, a.follower_count,
       CAST(p.like_count AS REAL) / a.follower_count AS like_rate,
       p.image_sha256, i.ext AS image_ext, p.taken_at, p.first_seen
FROM posts AS p
JOIN accounts AS a ON a.id = p.owner_id
JOIN images AS i ON i.sha256 = p.image_sha256
WHERE p.media_type IN ('photo', 'carousel')
  AND p.like_count IS NOT NULL AND p.like_count >= 0
  AND a.follower_count > 0;
"""

# v3: the drop-folder job queue, TLS failures by host, and counters (flows seen, ...).
V3_QUEUE_AND_COUNTERS = """
CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY,
    input_path     TEXT NOT NULL,
    sha256         TEXT,                         -- of the input's content: same content, one job
    state          TEXT NOT NULL CHECK (state IN
                       ('queued', 'waiting_model', 'running', 'done', 'rejected', 'failed')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    created        REAL NOT NULL,
    updated        REAL NOT NULL,
    started        REAL,
    finished       REAL,
    worker_pid     INTEGER,
    reason         TEXT,
    output_path    TEXT,
    sidecar_path   TEXT,
    score_before   REAL,
    score_after    REAL,
    model_version  INTEGER
);
CREATE UNIQUE INDEX jobs_content ON jobs(sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX jobs_state ON jobs(state);
CREATE TABLE tls_failures (
    host        TEXT PRIMARY KEY,
    count       INTEGER NOT NULL,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    last_error  TEXT
);
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
"""

# v4: Instagram documents that held post- or user-like objects the parsers could not read, by URL
# path and shape fingerprint (key paths, no values); bounded by instaflyd.store.formats.
V4_UNREAD_FORMATS = """
CREATE TABLE unread_formats (
    path         TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    count        INTEGER NOT NULL,
    first_seen   REAL NOT NULL,
    last_seen    REAL NOT NULL,
    PRIMARY KEY (path, fingerprint)
);
CREATE INDEX unread_formats_last_seen ON unread_formats(last_seen);
"""

# v5: the status history for the page's charts: one row per (tier, bucket), the last sample of
# the bucket; tiers of 5 minutes, an hour and a day, each pruned to its span by
# instaflyd.store.history (a few hundred kilobytes after a year).
V5_HISTORY = """
CREATE TABLE history (
    tier       INTEGER NOT NULL,                 -- bucket length in seconds: 300, 3600, 86400
    bucket     INTEGER NOT NULL,                 -- the bucket's start (Unix time, multiple of tier)
    time       REAL NOT NULL,                    -- when the sample was taken
    posts      INTEGER NOT NULL,                 -- totals at that time (cumulative counts)
    labelled   INTEGER NOT NULL,
    next_training_at INTEGER NOT NULL,           -- labelled posts at which training is due
    flows      INTEGER NOT NULL,
    enhanced   INTEGER NOT NULL,                 -- photos enhanced (jobs done) so far
    score_gain REAL NOT NULL,                    -- the sum of their predicted score gains
    PRIMARY KEY (tier, bucket)
) WITHOUT ROWID;
"""

# v6: counts read on every status request kept up to date instead of recounted: the rows of
# posts, accounts and images, and labelled posts per owner (kept by triggers on posts, accounts
# and images; the sum is `labelled`, the owners with any are what validation needs); the newest
# and the last seen posts found by an index, not a sort or a scan.
# A post is labelled by the rule of the `labelled_posts` view (V2_MODEL): the triggers use the
# same rule, and tests/test_store_counters.py checks them against the view.
V6_LABELLED_COUNTERS = """
CREATE INDEX posts_recent ON posts(first_seen, id);
CREATE INDEX posts_last_seen ON posts(last_seen);
CREATE TABLE row_counts (
    name   TEXT PRIMARY KEY,                     -- a table whose rows are counted
    value  INTEGER NOT NULL
);
INSERT INTO row_counts (name, value) VALUES
    ('posts', (SELECT COUNT(*) FROM posts)),
    ('accounts', (SELECT COUNT(*) FROM accounts)),
    ('images', (SELECT COUNT(*) FROM images));
CREATE TRIGGER row_counts_posts_insert AFTER INSERT ON posts
BEGIN UPDATE row_counts SET value = value + 1 WHERE name = 'posts'; END;
CREATE TRIGGER row_counts_posts_delete AFTER DELETE ON posts
BEGIN UPDATE row_counts SET value = value - 1 WHERE name = 'posts'; END;
CREATE TRIGGER row_counts_accounts_insert AFTER INSERT ON accounts
BEGIN UPDATE row_counts SET value = value + 1 WHERE name = 'accounts'; END;
CREATE TRIGGER row_counts_accounts_delete AFTER DELETE ON accounts
BEGIN UPDATE row_counts SET value = value - 1 WHERE name = 'accounts'; END;
CREATE TRIGGER row_counts_images_insert AFTER INSERT ON images
BEGIN UPDATE row_counts SET value = value + 1 WHERE name = 'images'; END;
CREATE TRIGGER row_counts_images_delete AFTER DELETE ON images
BEGIN UPDATE row_counts SET value = value - 1 WHERE name = 'images'; END;
CREATE TABLE owner_labels (
    owner_id  TEXT PRIMARY KEY,
    labelled  INTEGER NOT NULL                   -- the owner's rows in labelled_posts
);
INSERT INTO owner_labels (owner_id, labelled)
    SELECT owner_id, COUNT(*) FROM labelled_posts GROUP BY owner_id;
CREATE TRIGGER owner_labels_post_insert AFTER INSERT ON posts
WHEN NEW.media_type IN ('photo', 'carousel') AND NEW.like_count >= 0
  AND EXISTS (SELECT 1 FROM images WHERE sha256 = NEW.image_sha256)
  AND (SELECT follower_count FROM accounts WHERE id = NEW.owner_id) > 0
BEGIN
  INSERT INTO owner_labels (owner_id, labelled) VALUES (NEW.owner_id, 1)
  ON CONFLICT(owner_id) DO UPDATE SET labelled = labelled + 1;
END;
CREATE TRIGGER owner_labels_post_delete AFTER DELETE ON posts
WHEN OLD.media_type IN ('photo', 'carousel') AND OLD.like_count >= 0
  AND EXISTS (SELECT 1 FROM images WHERE sha256 = OLD.image_sha256)
  AND (SELECT follower_count FROM accounts WHERE id = OLD.owner_id) > 0
BEGIN
  UPDATE owner_labels SET labelled = labelled - 1 WHERE owner_id = OLD.owner_id;
END;
CREATE TRIGGER owner_labels_post_update
AFTER UPDATE OF media_type, like_count, image_sha256, owner_id ON posts
BEGIN
  UPDATE owner_labels SET labelled = labelled - 1
  WHERE owner_id = OLD.owner_id
    AND OLD.media_type IN ('photo', 'carousel') AND OLD.like_count >= 0
    AND EXISTS (SELECT 1 FROM images WHERE sha256 = OLD.image_sha256)
    AND (SELECT follower_count FROM accounts WHERE id = OLD.owner_id) > 0;
  INSERT INTO owner_labels (owner_id, labelled)
  SELECT NEW.owner_id, 1
  WHERE NEW.media_type IN ('photo', 'carousel') AND NEW.like_count >= 0
    AND EXISTS (SELECT 1 FROM images WHERE sha256 = NEW.image_sha256)
    AND (SELECT follower_count FROM accounts WHERE id = NEW.owner_id) > 0
  ON CONFLICT(owner_id) DO UPDATE SET labelled = labelled + 1;
END;
CREATE TRIGGER owner_labels_followers AFTER UPDATE OF follower_count ON accounts
WHEN COALESCE(OLD.follower_count > 0, 0) != COALESCE(NEW.follower_count > 0, 0)
BEGIN
  INSERT INTO owner_labels (owner_id, labelled)
  SELECT NEW.id, (CASE WHEN NEW.follower_count > 0 THEN 1 ELSE -1 END) * COUNT(*)
  FROM posts AS p
  WHERE p.owner_id = NEW.id AND p.media_type IN ('photo', 'carousel') AND p.like_count >= 0
    AND EXISTS (SELECT 1 FROM images WHERE sha256 = p.image_sha256)
  ON CONFLICT(owner_id) DO UPDATE SET labelled = labelled + excluded.labelled;
END;
CREATE TRIGGER owner_labels_image_insert AFTER INSERT ON images
BEGIN
  INSERT INTO owner_labels (owner_id, labelled)
  SELECT p.owner_id, COUNT(*)
  FROM posts AS p JOIN accounts AS a ON a.id = p.owner_id
  WHERE p.image_sha256 = NEW.sha256 AND p.media_type IN ('photo', 'carousel')
    AND p.like_count >= 0 AND a.follower_count > 0
  GROUP BY p.owner_id
  ON CONFLICT(owner_id) DO UPDATE SET labelled = labelled + excluded.labelled;
END;
CREATE TRIGGER owner_labels_image_delete AFTER DELETE ON images
BEGIN
  INSERT INTO owner_labels (owner_id, labelled)
  SELECT p.owner_id, -COUNT(*)
  FROM posts AS p JOIN accounts AS a ON a.id = p.owner_id
  WHERE p.image_sha256 = OLD.sha256 AND p.media_type IN ('photo', 'carousel')
    AND p.like_count >= 0 AND a.follower_count > 0
  GROUP BY p.owner_id
  ON CONFLICT(owner_id) DO UPDATE SET labelled = labelled + excluded.labelled;
END;
"""

# v7: phones. WireGuard devices the household added (one listener each; the keys are the
# household's secrets, like the CA: the database is 0600), every device the proxy has seen
# (by WireGuard device or by client address, bounded by the writer), and which device each
# post came from (pruned to the last week and a day).
V7_DEVICES = """
CREATE TABLE wireguard_devices (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    port                INTEGER NOT NULL,            -- its own UDP listener
    address             TEXT NOT NULL,               -- the device's address in the tunnel
    server_private_key  TEXT NOT NULL,               -- '' once revoked
    device_private_key  TEXT NOT NULL,               -- '' once revoked
    created             REAL NOT NULL,
    revoked             REAL
);
CREATE UNIQUE INDEX wireguard_devices_port ON wireguard_devices(port) WHERE revoked IS NULL;
CREATE TABLE seen_devices (
    key             TEXT PRIMARY KEY,                -- 'wg:<device id>' or 'ip:<address>'
    name            TEXT,                            -- the household's name for an address
    first_seen      REAL NOT NULL,
    last_seen       REAL NOT NULL,
    trusted_at      REAL,                            -- first handshake that took our certificate
    tls_untrusted   INTEGER NOT NULL DEFAULT 0,      -- failures before it trusted the box
    tls_pinned      INTEGER NOT NULL DEFAULT 0,      -- failures after: an app that pins
    tls_last_host   TEXT,
    tls_last_error  TEXT,
    tls_last_at     REAL
);
CREATE INDEX seen_devices_last_seen ON seen_devices(last_seen);
CREATE TABLE device_posts (
    device   TEXT NOT NULL,
    post_id  TEXT NOT NULL,
    seen_at  REAL NOT NULL,
    PRIMARY KEY (device, post_id)
) WITHOUT ROWID;
CREATE INDEX device_posts_seen ON device_posts(seen_at);
"""

# v8: the CPU time each training run used (the trainer's own, or its parent's measure of the
# child), for the daily training budget.
V8_TRAINING_CPU = """
ALTER TABLE training_runs ADD COLUMN cpu_seconds REAL;
"""

# v9: what is asked of a model version gets real columns instead of keys inside its metrics
# JSON: the kind of pass that trained it (incremental runs count since the last full one), and
# the version it was compared with before promotion, with that version's score on the same
# validation posts (the page's "last training" line). Filled from the JSON for earlier rows.
V9_VERSION_COLUMNS = """
ALTER TABLE model_versions ADD COLUMN pass_kind TEXT CHECK (pass_kind IN ('full', 'incremental'));
ALTER TABLE model_versions ADD COLUMN compared_version INTEGER;
ALTER TABLE model_versions ADD COLUMN compared_val_srcc REAL;
UPDATE model_versions SET
    pass_kind = CASE json_extract(metrics, '$.pass') WHEN 'incremental' THEN 'incremental'
           ELSE 'full' END,
    compared_version = json_extract(metrics, '$.current_version'),
    compared_val_srcc = json_extract(metrics, '$.current_val_srcc');
"""

# v10: posts only ever seen in an imported dump told apart from the proxy's own captures (so
# "nothing captured for N days" is about phones, not a dump's old times; a partial index finds
# the last capture), and what each model version learned, as the trainer found it: the captured
# posts it scores highest and lowest, and the edits that raised the household's photos most.
V10_CAPTURED_AND_LEARNED = """
ALTER TABLE posts ADD COLUMN imported INTEGER NOT NULL DEFAULT 0;  -- 1: only seen in an import
CREATE INDEX posts_captured_last_seen ON posts(last_seen) WHERE imported = 0;
CREATE TABLE learned_posts (
    version    INTEGER NOT NULL REFERENCES model_versions(version),
    kind       TEXT NOT NULL CHECK (kind IN ('highest', 'lowest')),
    position   INTEGER NOT NULL,                 -- 0 = the highest (or lowest) scored
    post_id    TEXT NOT NULL,
    score      REAL NOT NULL,                    -- the model's score: log(likes / followers)
    like_rate  REAL NOT NULL,                    -- the post's real likes per follower
    PRIMARY KEY (version, kind, position)
) WITHOUT ROWID;
CREATE TABLE learned_edits (
    version    INTEGER NOT NULL REFERENCES model_versions(version),
    edit       TEXT NOT NULL,                    -- an edit's name (exposure, warmth, ...)
    direction  INTEGER NOT NULL CHECK (direction IN (-1, 1)),
    photos     INTEGER NOT NULL,                 -- finished photos that got it
    mean_gain  REAL NOT NULL,                    -- their mean score gain
    PRIMARY KEY (version, edit, direction)
) WITHOUT ROWID;
"""

MIGRATIONS: list[str] = [
    V1_CAPTURE,
    V2_MODEL,
    V3_QUEUE_AND_COUNTERS,
    V4_UNREAD_FORMATS,
    V5_HISTORY,
    V6_LABELLED_COUNTERS,
    V7_DEVICES,
    V8_TRAINING_CPU,
    V9_VERSION_COLUMNS,
    V10_CAPTURED_AND_LEARNED,
]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The database was written by a newer Instafly."""


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations the database lacks, up to `target`; returns the resulting version."""
    while True:
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database is at schema version {current}, newer than this Instafly "
                f"({SCHEMA_VERSION}); upgrade Instafly"
            )
        if current >= target:
            return current
        with write_transaction(conn):
            # Another process may have migrated while we waited for the lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] == current:
                for statement in _statements(MIGRATIONS[current]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {current + 1}")


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (waiting for other writers up to the busy timeout); committed when the
    block ends, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
