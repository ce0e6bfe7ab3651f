"""Instafly's configuration: packaged defaults, then the user's YAML file, then --data-dir.

The merged mapping is validated by pydantic models that forbid unknown keys. Every problem is
reported the way Frigate does it, as one line naming the file, the line, the key path and the
fix, for example::

    instafly.yaml line 7: proxy -> listen_prot: unknown key; did you mean 'listen_port'?
    instafly.yaml line 8: web -> port: must be from 1 to 65535 (got 70000)
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from instaflyd.resources import asset_path

ENV_CONFIG = "INSTAFLY_CONFIG"
SYSTEM_CONFIG = Path("/etc/instafly/instafly.yaml")
USER_CONFIG = Path("~/.config/instafly/instafly.yaml")

# Keys whose values are secrets: never shown in a message, however wrong the value is (whole
# sections are hidden too when a problem is reported on the section that holds them).
SECRET_KEYS: frozenset[tuple[str, ...]] = frozenset(
    {("web", "password"), ("proxy", "auth"), ("proxy", "mitmproxy_options")}
)
HIDDEN = "value hidden: a secret"

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(ge=0, le=86400)]


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def one_line(self) -> str:
        """The first problem, and how many more there are (for a command's one-line failure)."""
        more = len(self.problems) - 1
        return self.problems[0] + (
            f" (and {more} more; see instaflyd check-config)" if more else ""
        )


class Section(BaseModel):
    """A config section: every key required (config/instafly.yaml has them all), none unknown."""

    model_config = ConfigDict(extra="forbid")


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"]
    events_retention_days: Annotated[float, Field(gt=0, le=36_500)]


class ProxyConfig(Section):
    mode: Literal["regular", "transparent", "wireguard"]
    listen_host: str
    listen_port: Port
    auth: str | None
    pending_images_max: Annotated[int, Field(ge=0, le=100_000)]
    pending_images_max_age_seconds: Seconds
    pending_images_max_bytes: Annotated[int, Field(ge=0, le=4_000_000_000)]
    store_retry_max_bytes: Annotated[int, Field(ge=0, le=4_000_000_000)]
    max_body_bytes: Annotated[int, Field(ge=1024, le=1_000_000_000)]
    max_buffered_bytes: Annotated[int, Field(ge=1024, le=16_000_000_000)]
    box_ports_allowed: list[Port]
    max_connections_per_client: Annotated[int, Field(ge=1, le=100_000)]
    max_connections: Annotated[int, Field(ge=16, le=1_000_000)]
    idle_timeout_seconds: Annotated[float, Field(ge=1, le=86400)]
    mitmproxy_options: dict[str, Any]

    @field_validator("auth")
    @classmethod
    def _user_colon_password(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value or value.startswith(":")):
            raise ValueError('must look like "user:password", or be null for no authentication')
        return value


class WireGuardConfig(Section):
    enabled: bool
    port: Port
    max_devices: Annotated[int, Field(ge=1, le=64)]
    endpoint: Annotated[str, Field(max_length=253)] | None


class WebConfig(Section):
    host: str
    port: Port
    password: str | None
    allowed_hosts: list[Annotated[str, Field(min_length=1, max_length=253)]]
    uploads_max_total_mb: Annotated[float, Field(gt=0, le=10_000_000)]
    uploads_min_free_mb: Annotated[float, Field(ge=0, le=10_000_000)]


class WatchConfig(Section):
    drop_dir: Path
    output_dir: Path
    recursive: bool
    settle_seconds: Seconds
    idle_unload_seconds: Seconds
    max_attempts: Annotated[int, Field(ge=1, le=100)]


class ModelConfig(Section):
    backbone: Literal["vgg16"]
    input_size: Annotated[int, Field(ge=32, le=1024)]
    weights: str
    weights_url: str

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, value: str) -> str:
        if value in ("imagenet", "none") or value.endswith(".h5"):
            return value
        raise ValueError(f"must be imagenet, none or the path of an .h5 file (got {value!r})")


class TrainConfig(Section):
    min_new_posts: Annotated[int, Field(ge=1, le=1_000_000)]
    epochs: Annotated[int, Field(ge=1, le=1000)]
    objective: Literal["regression", "pairwise"]
    batch_size: Annotated[int, Field(ge=1, le=4096)]
    learning_rate: Annotated[float, Field(gt=0, le=1)]
    min_labelled_posts: Annotated[int, Field(ge=2, le=1_000_000)]
    min_owners: Annotated[int, Field(ge=2, le=100_000)]
    validation_fraction: Annotated[float, Field(gt=0, lt=1)]
    seed: int
    check_interval_seconds: Annotated[float, Field(ge=1, le=86400)]
    nice: Annotated[int, Field(ge=0, le=19)]
    replay_posts: Annotated[int, Field(ge=0, le=1_000_000)]
    full_pass_every: Annotated[int, Field(ge=1, le=1000)]
    validation_max_posts: Annotated[int, Field(ge=1, le=1_000_000)]
    feature_cache_max_gb: Annotated[float, Field(gt=0, le=100_000)]
    cpu_budget_hours_per_day: Annotated[float, Field(gt=0, le=24 * 64)]

    @property
    def feature_cache_max_bytes(self) -> int:
        return int(self.feature_cache_max_gb * 1e9)


class EnhanceConfig(Section):
    mode: Literal["edits", "pixels"]
    steps: Annotated[int, Field(ge=1, le=10_000)]
    search_size: Annotated[int | None, Field(ge=32, le=1024)]
    patience: Annotated[int, Field(ge=1, le=1000)]
    min_gain: Annotated[float, Field(ge=0, le=1)]
    learning_rate: Annotated[float, Field(gt=0, le=10)]
    jpeg_quality: Annotated[int, Field(ge=1, le=100)]
    max_pixels: Annotated[int, Field(ge=1, le=2_000_000_000)]
    max_file_mb: Annotated[float, Field(gt=0, le=10_000)]


class FaultsConfig(Section):
    disk_floor_mb: Annotated[float, Field(ge=0, le=10_000_000)]
    disk_floor_percent: Annotated[float, Field(ge=0, le=100)]
    hang_seconds: Annotated[float, Field(ge=1, le=86400)]

    def disk_floor_bytes(self, total_bytes: int) -> int:
        """Free space below this is a problem: the smaller of the two floors."""
        return int(min(self.disk_floor_mb * 1e6, total_bytes * self.disk_floor_percent / 100))


class BackupConfig(Section):
    dir: Path
    keep: Annotated[int, Field(ge=1, le=365)]
    interval_hours: Annotated[float, Field(gt=0, le=8760)]
    min_free_mb: Annotated[int, Field(ge=0, le=10_000_000)]


class Config(Section):
    """The whole validated configuration, with the paths derived from `data_dir`."""

    data_dir: Path
    log: LogConfig
    proxy: ProxyConfig
    wireguard: WireGuardConfig
    web: WebConfig
    watch: WatchConfig
    model: ModelConfig
    train: TrainConfig
    enhance: EnhanceConfig
    faults: FaultsConfig
    backup: BackupConfig

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The user's config file these values came from (None: defaults only)."""
        return self._source

    @property
    def db_path(self) -> Path:
        return self.data_dir / "instafly.db"

    @property
    def enhancer_wanted_path(self) -> Path:
        """Touched by the page when a photo upload begins: the worker starts loading the model."""
        return self.data_dir / "enhancer.wanted"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def runtime_dir(self) -> Path:
        """Where the processes leave each other small notes that must not need the data folder
        (which may be full or read-only): systemd's RuntimeDirectory, else /dev/shm, one folder
        per data_dir."""
        base = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        if not base:
            base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
        return Path(base) / f"instafly-{digest}"

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def weights_dir(self) -> Path:
        return self.data_dir / "weights"

    @property
    def mitmproxy_dir(self) -> Path:
        return self.data_dir / "mitmproxy"


@dataclass(frozen=True)
class _Origin:
    """Where a key was written: which file, which line (1-based)."""

    file: Path
    line: int


def default_config_path() -> Path:
    return asset_path("config", "instafly.yaml")


def find_config_file(explicit: Path | str | None = None) -> Path | None:
    """The user's config file: --config, $INSTAFLY_CONFIG, then the system and user locations."""
    for chosen in (explicit, os.environ.get(ENV_CONFIG) or None):
        if chosen is not None:
            path = Path(chosen).expanduser()
            if not path.is_file():
                raise ConfigError([f"{path}: config file does not exist"])
            return path
    for candidate in (SYSTEM_CONFIG, USER_CONFIG.expanduser()):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: Path | str | None = None,
    data_dir: Path | str | None = None,
    *,
    search: bool = True,
) -> Config:
    """Defaults, then the user's file (given, or found when `search`), then `data_dir`."""
    user_file = find_config_file(path) if (path is not None or search) else None
    defaults_file = default_config_path()
    merged, origins = _read_yaml(defaults_file)
    if user_file is not None:
        user_values, user_origins = _read_yaml(user_file)
        merged = _deep_merge(merged, user_values)
        origins.update(user_origins)
    config = _validate(merged, origins, user_file or defaults_file)
    return _finish(config, user_file, data_dir)


def build_config(
    overrides: Mapping[str, Any] | None = None, data_dir: Path | str | None = None
) -> Config:
    """A config from the defaults and a mapping, as if the mapping had been a YAML file.

    For tests and tools that want a config without writing a file first.
    """
    merged, origins = _read_yaml(default_config_path())
    merged = _deep_merge(merged, dict(overrides or {}))
    config = _validate(merged, origins, Path("<overrides>"))
    return _finish(config, None, data_dir)


def _finish(config: Config, user_file: Path | None, data_dir: Path | str | None) -> Config:
    """Apply --data-dir and resolve every path to an absolute one."""
    if data_dir is not None:
        base = Path(data_dir).expanduser().absolute()
    else:
        base = config.data_dir.expanduser()
        if not base.is_absolute():
            base = ((user_file.parent if user_file else Path.cwd()) / base).absolute()
    config.data_dir = base
    config.watch.drop_dir = _under(base, config.watch.drop_dir)
    config.watch.output_dir = _under(base, config.watch.output_dir)
    config.backup.dir = _under(base, config.backup.dir)
    if config.model.weights.endswith(".h5"):
        config.model.weights = str(_under(base, Path(config.model.weights)))
    config._source = user_file
    return config


def _under(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], _Origin]]:
    """The file's mapping and, for every key path in it, the line it is written on."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}{where}: not valid YAML: {problem}"]) from exc
    if values is None:
        return {}, {}
    if not isinstance(values, dict):
        raise ConfigError([f"{path} line 1: the file must be a mapping of keys, like 'proxy:'"])
    origins: dict[tuple[str, ...], _Origin] = {}
    problems: list[str] = []
    if root is not None:
        _collect_origins(root, (), path, origins, problems)
    if problems:
        raise ConfigError(problems)
    return values, origins


def _collect_origins(
    node: yaml.Node,
    prefix: tuple[str, ...],
    path: Path,
    origins: dict[tuple[str, ...], _Origin],
    problems: list[str],
) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = str(key_node.value)
        line = key_node.start_mark.line + 1
        if key in seen:
            problems.append(f"{path} line {line}: {_dotted((*prefix, key))}: key written twice")
        seen.add(key)
        origins[(*prefix, key)] = _Origin(path, line)
        _collect_origins(value_node, (*prefix, key), path, origins, problems)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _validate(
    values: dict[str, Any], origins: dict[tuple[str, ...], _Origin], fallback: Path
) -> Config:
    try:
        return Config.model_validate(values)
    except ValidationError as exc:
        problems = [_describe(error, origins, fallback) for error in exc.errors()]
        raise ConfigError(sorted(problems, key=_line_order)) from None


def _line_order(problem: str) -> tuple[str, int]:
    head, _, rest = problem.partition(" line ")
    number = rest.split(":", 1)[0]
    return head, int(number) if number.isdigit() else 0


def _describe(error: Any, origins: dict[tuple[str, ...], _Origin], fallback: Path) -> str:
    loc = tuple(str(part) for part in error["loc"])
    origin = _origin_of(loc, origins)
    where = f"{origin.file} line {origin.line}" if origin else str(fallback)
    explanation = _explain(error, loc)
    if is_secret(loc) and "(got " in explanation:
        explanation = explanation[: explanation.rindex("(got ")].rstrip() + f" ({HIDDEN})"
    return f"{where}: {_dotted(loc)}: {explanation}"


def is_secret(loc: tuple[str, ...]) -> bool:
    """Is `loc` a secret key, inside one, or a section that holds one (whose value shows it)?"""
    return any(loc[: len(key)] == key or key[: len(loc)] == loc for key in SECRET_KEYS)


def _origin_of(loc: tuple[str, ...], origins: dict[tuple[str, ...], _Origin]) -> _Origin | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in origins:
            return origins[loc[:end]]
    return None


def _dotted(loc: tuple[str, ...]) -> str:
    return " -> ".join(loc) if loc else "(top level)"


def _explain(error: Any, loc: tuple[str, ...]) -> str:
    kind = error["type"]
    got = error.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{_allowed_range(loc)} (got {got!r})"
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']} (got {got!r})"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number (got {got!r})"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number (got {got!r})"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false (got {got!r})"
    if kind in ("string_type", "path_type"):
        return f"must be text (got {got!r})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of keys (got {got!r})"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return f"{error['msg']} (got {got!r})"


def _section_of(loc: tuple[str, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the last key of `loc`."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _unknown_key(loc: tuple[str, ...]) -> str:
    section = _section_of(loc)
    known = sorted(section.model_fields) if section else []
    close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return "unknown key; the keys here are " + ", ".join(known)


def _allowed_range(loc: tuple[str, ...]) -> str:
    section = _section_of(loc)
    field = section.model_fields.get(loc[-1]) if section else None
    low: object = None
    high: object = None
    low_open = high_open = False
    for rule in field.metadata if field else []:
        if isinstance(rule, annotated_types.Ge):
            low = rule.ge
        elif isinstance(rule, annotated_types.Gt):
            low, low_open = rule.gt, True
        elif isinstance(rule, annotated_types.Le):
            high = rule.le
        elif isinstance(rule, annotated_types.Lt):
            high, high_open = rule.lt, True
    low_words = f"{'greater than' if low_open else 'at least'} {low}"
    high_words = f"{'less than' if high_open else 'at most'} {high}"
    if low is not None and high is not None:
        if low_open or high_open:
            return f"must be {low_words} and {high_words}"
        return f"must be from {low} to {high}"
    if low is not None:
        return f"must be {low_words}"
    if high is not None:
        return f"must be {high_words}"
    return "is out of range"
