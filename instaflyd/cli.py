"""The `instaflyd` command line: parse arguments, load the config, call one module, report.

Every command takes --config and --data-dir (before or after the command's name), exits 0 on
success and non-zero with a one-line reason on failure, and with --json prints exactly one JSON
document on stdout. Command bodies live in the modules they belong to; imports happen inside the
handlers so that light commands (stats, export, proxy) never load TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from instaflyd import __version__
from instaflyd.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from instaflyd.model.scoring import Scorer
    from instaflyd.store.snapshot import StoreCounts

log = logging.getLogger("instafly.cli")


class CommandError(Exception):
    """A command failed for a reason the user can act on; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


BACKUP_NICE = 19

Handler = Callable[[argparse.Namespace, Config], int]


def print_json(document: Any) -> None:
    """Print exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()


# --- command handlers: thin calls into the modules that do the work ------------------------


def cmd_run(args: argparse.Namespace, config: Config | None) -> int:
    """The daemon loads the config itself: an invalid one starts the safe-mode page instead."""
    from instaflyd.daemon.run import run_daemon
    from instaflyd.web.server import WebServerError

    try:
        return run_daemon(args.config, args.data_dir, verbose=args.verbose)
    except WebServerError as exc:
        raise CommandError(str(exc)) from exc


def cmd_proxy(args: argparse.Namespace, config: Config) -> int:
    from instaflyd.capture.proxy import ProxyStartupError, run_proxy

    try:
        run_proxy(config, verbose=args.verbose)
    except ProxyStartupError as exc:
        raise CommandError(f"proxy: cannot start: {exc}") from None
    return 0


def cmd_worker(args: argparse.Namespace, config: Config) -> int:
    if args.enhancer:
        from instaflyd.watch.enhancer import run_enhancer

        return run_enhancer(config)
    from instaflyd.watch.worker import run_worker

    return run_worker(config)


def cmd_import(args: argparse.Namespace, config: Config) -> int:
    from instaflyd.capture.dumps import import_flow_files

    result = import_flow_files(config, args.flowfiles)
    for problem in result.parse_errors:
        print(f"instaflyd: import: warning: {problem}", file=sys.stderr)
    for problem in result.file_errors:
        print(f"instaflyd: import: {problem}", file=sys.stderr)
    summary = result.summary.as_dict()
    if args.json:
        print_json(summary)
    else:
        print(", ".join(f"{name.replace('_', ' ')} {value}" for name, value in summary.items()))
    return 1 if result.file_errors else 0


def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    from instaflyd.status.collect import collect_status
    from instaflyd.store import Database

    with Database(config.db_path) as db:
        status = collect_status(config, db.conn)
    if args.json:
        print_json(status.as_dict())  # the document /api/status serves
        return 0
    totals, model = status.capture.totals, status.model
    jobs = ", ".join(f"{state} {n}" for state, n in status.drop_folder.jobs.items())
    print(f"data dir   {config.data_dir}")
    print(f"posts      {totals.posts}")
    print(f"accounts   {totals.accounts}")
    print(f"images     {totals.images}")
    print(f"labelled   {totals.labelled}")
    print(f"model      {'v' + str(model.version) if model.version else 'none yet'}")
    print(f"training   {model.next_training.reason}")
    print(f"weights    {model.weights.message}")
    print(f"jobs       {jobs}")
    if status.capture.unread_formats:
        paths = len({row.path for row in status.capture.unread_formats})
        print(f"unread     formats not understood from {paths} paths (stats --json lists them)")
    return 0


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    from instaflyd.fsutil import atomic_writer
    from instaflyd.store import Database, ImageFiles
    from instaflyd.store.export import write_csv

    images = ImageFiles(config.images_dir)
    with Database(config.db_path) as db:
        if args.csv == "-":
            write_csv(db.conn, images, sys.stdout)
            return 0
        with atomic_writer(Path(args.csv)) as handle:  # streamed: memory stays flat
            text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
            written = write_csv(db.conn, images, text)
            text.flush()
            text.detach()  # atomic_writer closes (and fsyncs) the file itself
    print(f"{written} posts written to {args.csv}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace, config: Config) -> int:
    from instaflyd import heartbeat
    from instaflyd.policy.training import training_plan
    from instaflyd.store import Database
    from instaflyd.weights.status import weights_status

    heartbeat.start_thread("trainer")  # an epoch can be minutes of TensorFlow
    # Priority is the caller's: the daemon's scheduler starts this at `train.nice`.
    weights_state = weights_status(config)
    with Database(config.db_path) as db:
        status = training_plan(
            config,
            db.conn,
            weights_ok=weights_state.ok,
            weights_message=weights_state.message,
            allow_random_weights=args.allow_random_weights,
        )
    if args.scheduled and not status.due and not args.force:
        log.debug("not training: %s", status.reason)
        return 0
    if status.running:
        raise CommandError(status.reason)
    if not status.weights_ok and not args.allow_random_weights:
        raise CommandError(f"{status.reason}; or train on random weights: --allow-random-weights")
    if not status.due and not args.force:
        raise CommandError(f"training is not due: {status.reason}; --force trains anyway")

    from instaflyd import allocator
    from instaflyd.logs import native_noise_filtered

    allocator.return_large_blocks()  # before TensorFlow: its large tensors go back when freed
    with native_noise_filtered():  # TensorFlow's CUDA chatter, as the daemon filters it
        from instaflyd.model.labels import NotEnoughData
        from instaflyd.model.training import TrainingBusy, run_training

        try:
            weights = None if status.weights_ok else "none"
            result = run_training(config, weights=weights, full_pass=args.full)
        except (NotEnoughData, TrainingBusy) as exc:
            raise CommandError(str(exc)) from None
    if args.json:
        print_json(result.as_json())
    elif args.scheduled:
        log.info("%s", result.summary())  # the daemon's log: one line per result
    else:
        print(result.summary())
    return 0


def cmd_score(args: argparse.Namespace, config: Config) -> int:
    from instaflyd.model.errors import NoModelError
    from instaflyd.model.inputs import ImageReadError
    from instaflyd.model.scoring import load_scorer, score_files

    try:
        scorer = load_scorer(config)
        scores = score_files(scorer, args.images, max_pixels=config.enhance.max_pixels)
    except (NoModelError, ImageReadError) as exc:
        raise CommandError(str(exc)) from None
    scored = [(str(path), float(score)) for path, score in zip(args.images, scores, strict=True)]
    if args.json:
        print_json([{"path": path, "score": score} for path, score in scored])
        return 0
    print(f"model v{scorer.version}: score = predicted log(likes / followers), higher is better")
    for path, score in scored:
        print(f"{score:8.3f}  ({math.exp(score):.2%} of followers)  {path}")
    return 0


def _current_scorer(args: argparse.Namespace, config: Config) -> Scorer:
    """The model for enhance/generate, or the one-line reason there is none (posts needed)."""
    from instaflyd.model.errors import NoModelError
    from instaflyd.model.scoring import load_scorer

    if args.steps is not None and args.steps < 1:
        raise CommandError("--steps must be at least 1", 2)
    try:
        return load_scorer(config)
    except NoModelError as exc:
        raise CommandError(str(exc)) from None


def cmd_enhance(args: argparse.Namespace, config: Config) -> int:
    scorer = _current_scorer(args, config)
    from instaflyd.enhance.io import RejectedImage
    from instaflyd.enhance.pipeline import enhance_file
    from instaflyd.enhance.progress import terminal_progress

    done, failed = [], 0
    for path in args.images:
        try:
            with terminal_progress(str(path)) as progress:
                result = enhance_file(
                    path, args.output_dir, scorer, config, args.mode, args.steps, progress
                )
        except (RejectedImage, OSError) as exc:
            failed += 1
            print(f"instaflyd: {path}: {exc}", file=sys.stderr)
            continue
        done.append(result.as_json())
        if not args.json:
            print(
                f"{path} -> {result.output}: score {result.score_before:.4f}"
                f" -> {result.score_after:.4f} in {result.seconds:.1f} s"
            )
    if args.json:
        print_json(done)
    return 1 if failed else 0


def cmd_generate(args: argparse.Namespace, config: Config) -> int:
    scorer = _current_scorer(args, config)
    from instaflyd.enhance.noise import generate_file
    from instaflyd.enhance.progress import terminal_progress

    with terminal_progress(str(args.output)) as progress:
        made = generate_file(args.output, scorer, config, args.steps, args.seed, progress)
    print(
        f"{made.output}: {made.size}x{made.size}, score {made.score_start:.4f} (noise)"
        f" -> {made.score:.4f}"
    )
    return 0


def cmd_weights(args: argparse.Namespace, config: Config) -> int:
    from instaflyd.weights.fetch import fetch_weights
    from instaflyd.weights.file import WeightsError
    from instaflyd.weights.receive import import_weights
    from instaflyd.weights.status import weights_status

    if (args.action == "import") != (args.file is not None):
        raise CommandError("weights import needs FILE (and only import takes one)", code=2)
    try:
        if args.action == "fetch":
            status = fetch_weights(config)
        elif args.action == "import":
            status = import_weights(config, args.file)
        else:
            status = weights_status(config)
    except WeightsError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print_json(status.as_dict())
    else:
        print(status.message + (f": {status.path}" if status.ok and status.path else ""))
    return 0


def cmd_ca(args: argparse.Namespace, config: Config) -> int:
    from instaflyd.capture.ca import ensure_ca

    ca = ensure_ca(config.mitmproxy_dir)
    if args.json:
        print_json(ca.as_dict())
    else:
        print(f"certificate  {ca.cert_path}")
        print(f"sha256       {ca.sha256}")
    return 0


def cmd_password(args: argparse.Namespace, config: Config) -> int:
    """Set the status page's password: typed twice at a prompt, one line on stdin, or random."""
    from instaflyd.web.password import (
        PasswordError,
        check_new_password,
        ensure_password,
        generate_password,
        set_password,
    )

    if config.web.password is not None:
        if args.init:
            return 0  # the config's password is the one set
        raise CommandError(
            f"web.password is set in {config.source}, and it takes precedence: remove it there "
            "first, then run instaflyd password again"
        )
    if args.init:
        created = ensure_password(config.data_dir)
        if created is not None:
            print(created)
        return 0
    try:
        if args.generate:
            password = generate_password()
        elif sys.stdin.isatty():
            import getpass

            password = check_new_password(getpass.getpass("New password for the status page: "))
            if getpass.getpass("The same again: ") != password:
                raise CommandError("the two passwords differ; nothing changed")
        else:
            password = sys.stdin.readline()
        set_password(config.data_dir, password)
    except PasswordError as exc:
        raise CommandError(f"{exc}; nothing changed") from None
    if args.generate:
        print(password)
    print(
        "password changed: every log-in made with the old one has ended",
        file=sys.stderr,
    )
    return 0


@contextlib.contextmanager
def _backup_errors() -> Iterator[None]:
    """A refused or failed backup, restore or migration is the command's one-line error."""
    from instaflyd.backup import BackupError

    try:
        yield
    except BackupError as exc:
        raise CommandError(str(exc)) from None


def _counts_text(counts: StoreCounts) -> str:
    """What a backup holds (or a restore gave back), in the terms a household checks it by."""
    return (
        f"{counts.posts} posts, {counts.labelled} labelled, {counts.images} images,"
        f" {counts.promoted_models} promoted models, {counts.jobs} jobs"
    )


def cmd_backup(args: argparse.Namespace, config: Config) -> int:
    """A backup file now (FILE), or the daily one into backup.dir (--scheduled, as the daemon)."""
    from instaflyd.backup import make_backup, read_manifest, scheduled_backup

    if (args.file is None) != args.scheduled:
        raise CommandError("backup needs FILE, or --scheduled for the daily backup", code=2)
    with _backup_errors():
        if args.scheduled:
            os.nice(BACKUP_NICE)  # the lowest CPU priority: the proxy and the page come first
            path = scheduled_backup(config)
            manifest = read_manifest(path)
        else:
            path = args.file
            manifest = make_backup(config, path)
    if args.json:
        print_json({"path": str(path), "bytes": path.stat().st_size, **manifest.as_dict()})
    else:
        print(
            f"{path}: {_counts_text(manifest.counts)}, {path.stat().st_size / 1e6:.1f} MB"
            + (
                f" (its {manifest.pieces} files shared in {path.parent / 'files'}:"
                f" {manifest.added_bytes / 1e6:.1f} MB of them new)"
                if manifest.pieces
                else ""
            )
        )
    return 0


def cmd_restore(args: argparse.Namespace, config: Config) -> int:
    from instaflyd.backup import restore

    with _backup_errors():
        result = restore(config, args.file, force=args.force)
    counts = result.counts
    if args.json:
        print_json(
            {
                "manifest": result.manifest.as_dict(),
                "counts": counts.as_dict(),
                "files": result.files,
                "config_written": str(result.config_written) if result.config_written else None,
            }
        )
        return 0
    print(
        f"restored {args.file}: {_counts_text(counts)}, {result.files} files into {config.data_dir}"
    )
    if result.config_written is not None:
        print(f"the backup's config is now {result.config_written} (the one before beside it)")
    return 0


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    """Bring the store to this release's schema now (install.sh runs it on an upgrade)."""
    from instaflyd.backup.upgrade import upgrade_store

    with _backup_errors():
        result = upgrade_store(config)
    if args.json:
        print_json({"before": result.before, "after": result.after, "kept": result.kept})
    elif result.before is None:
        print(f"new store at schema v{result.after}")
    elif result.before == result.after:
        print(f"store at schema v{result.after}: nothing to migrate")
    else:
        print(
            f"store migrated from schema v{result.before} to v{result.after}"
            f" (the database before is kept as {result.kept})"
        )
    return 0


def cmd_check_config(args: argparse.Namespace, config: Config | None) -> int:
    """Validate; `main` has already loaded the config, so reaching here means it is valid."""
    assert config is not None
    where = config.source or "built-in defaults"
    print(f"{where}: OK (data_dir {config.data_dir})")
    return 0


# --- the parser ----------------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--config/--data-dir/-v, accepted before and after the command name."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        metavar="FILE",
        help="config file (default: $INSTAFLY_CONFIG, /etc/instafly/instafly.yaml,"
        " ~/.config/instafly/instafly.yaml)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        metavar="DIR",
        help="override data_dir from the config",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="log debug messages and show tracebacks",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instaflyd",
        description="Instafly: capture Instagram posts, learn what people like, enhance photos.",
    )
    parser.add_argument("--version", action="version", version=f"instaflyd {__version__}")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, handler: Handler, help_text: str, *, loads_config: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _global_options(sub, suppress=True)
        sub.set_defaults(handler=handler, loads_config=loads_config)
        return sub

    command(
        "run",
        cmd_run,
        "run the whole appliance: proxy, worker, trainer and status page",
        loads_config=False,
    )
    command("proxy", cmd_proxy, "run only the capturing proxy")
    sub = command("worker", cmd_worker, "run only the drop-folder worker")
    # The process the worker starts to hold the model while there is work (not for people).
    sub.add_argument("--enhancer", action="store_true", help=argparse.SUPPRESS)

    sub = command("import", cmd_import, "read mitmproxy dump files into the store")
    sub.add_argument("flowfiles", nargs="+", type=Path, metavar="FLOWFILE")
    sub.add_argument("--json", action="store_true", help="print a JSON summary")

    sub = command("stats", cmd_stats, "counts: posts, accounts, images, labelled, model, jobs")
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = command("export", cmd_export, "every post as CSV")
    sub.add_argument("--csv", default="-", metavar="FILE|-", help="write here (default: stdout)")

    sub = command("train", cmd_train, "fine-tune the model now and print the run's metrics")
    sub.add_argument("--force", action="store_true", help="train even if not enough new posts")
    sub.add_argument(
        "--full", action="store_true", help="train on every post, not the new ones + a replay"
    )
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument(
        "--scheduled",
        action="store_true",
        help="as the daemon runs it: exit 0 quietly when not due (unless --force), log the result",
    )
    sub.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="train even though the ImageNet weights are missing",
    )

    sub = command("score", cmd_score, "predicted insta-bae score of each image")
    sub.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = command("enhance", cmd_enhance, "enhance photos so that the model scores them higher")
    sub.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    sub.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="where to write the results (default: beside each input)",
    )
    sub.add_argument("--mode", choices=("edits", "pixels"), help="default: enhance.mode")
    sub.add_argument("--steps", type=int, metavar="N", help="default: enhance.steps")
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = command("generate", cmd_generate, "make the most insta-bae image from noise")
    sub.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    sub.add_argument("--steps", type=int, metavar="N")
    sub.add_argument("--seed", type=int, default=0, metavar="N")

    sub = command("weights", cmd_weights, "the ImageNet VGG16 weights: status, fetch, import")
    sub.add_argument("action", choices=("status", "fetch", "import"))
    sub.add_argument("file", nargs="?", type=Path, metavar="FILE", help="for import")
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = command("ca", cmd_ca, "the proxy's CA certificate: path and SHA-256 fingerprint")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub = command(
        "password",
        cmd_password,
        "set the status page's password (typed at a prompt, or one line on stdin)",
    )
    way = sub.add_mutually_exclusive_group()
    way.add_argument("--generate", action="store_true", help="a random one, printed once")
    way.add_argument(
        "--init",
        action="store_true",
        help="a random one only if none is set yet (printed then; nothing printed otherwise)",
    )

    def backup_file_command(
        name: str,
        handler: Handler,
        help_text: str,
        switch: tuple[str, str],
        *,
        file_optional: bool = False,
    ) -> None:
        """A command on a backup FILE (`backup`, `restore`): FILE, one switch, --json."""
        sub = command(name, handler, help_text)
        sub.add_argument("file", nargs="?" if file_optional else None, type=Path, metavar="FILE")
        flag, flag_help = switch
        sub.add_argument(flag, action="store_true", help=flag_help)
        sub.add_argument("--json", action="store_true", help="print JSON")

    backup_file_command(
        "backup",
        cmd_backup,
        "write a backup of the data, models, config and secrets to FILE",
        ("--scheduled", "the daily backup into backup.dir, oldest removed (as the daemon runs it)"),
        file_optional=True,  # not with --scheduled; cmd_backup says which of the two is needed
    )
    backup_file_command(
        "restore",
        cmd_restore,
        "put a backup FILE back onto a fresh install",
        ("--force", "replace a store that already holds posts (stop the daemon first)"),
    )
    sub = command("migrate", cmd_migrate, "bring the store to this release's schema now")
    sub.add_argument("--json", action="store_true", help="print JSON")
    command("check-config", cmd_check_config, "validate the config; exit 0 or 1", loads_config=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from instaflyd.logs import setup_logging

    setup_logging("debug" if args.verbose else "info", component=args.command)
    try:
        config = None
        if args.loads_config:
            config = load_config(args.config, args.data_dir)
            if not args.verbose:
                logging.getLogger("instafly").setLevel(config.log.level.upper())
        return int(args.handler(args, config) or 0)
    except ConfigError as exc:
        if args.command == "check-config":
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
        return _fail(f"config error: {exc.one_line()}", 1)
    except CommandError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:
        if args.verbose:
            raise
        from instaflyd.store import StoreError

        if isinstance(exc, StoreError):
            return _fail(str(exc), 1)
        return _fail(
            f"{args.command} failed: {type(exc).__name__}: {exc} (run with -v for details)", 1
        )


def _fail(message: str, code: int) -> int:
    print(f"instaflyd: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
