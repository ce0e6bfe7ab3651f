"""Config loading: defaults, merging, path resolution, errors that point at file, line and fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import run_cli

from instaflyd.config import Config, ConfigError, build_config, default_config_path, load_config


def write(tmp_path: Path, text: str, name: str = "instafly.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_defaults_alone_give_the_documented_values(tmp_path: Path) -> None:
    config = load_config(search=False)
    assert config.source is None
    assert config.data_dir == Path("~/.local/share/instafly").expanduser()
    assert config.watch.drop_dir == Path("~/Instafly/drop").expanduser()
    assert config.watch.output_dir == Path("~/Instafly/enhanced").expanduser()
    assert (config.proxy.mode, config.proxy.listen_host, config.proxy.listen_port) == (
        "regular",
        "0.0.0.0",
        8080,
    )
    assert (config.web.host, config.web.port, config.web.password) == ("0.0.0.0", 8081, None)
    assert (config.model.backbone, config.model.input_size, config.model.weights) == (
        "vgg16",
        320,
        "imagenet",
    )
    assert (config.train.min_new_posts, config.train.epochs) == (200, 10)
    assert (config.enhance.mode, config.enhance.steps) == ("edits", 50)


def test_typo_in_a_key_names_file_line_path_and_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path, "data_dir: /tmp/x\nproxy:\n  listen_host: 127.0.0.1\n  listen_prot: 9090\n"
    )
    assert problems_of(path) == [
        f"{path} line 4: proxy -> listen_prot: unknown key; did you mean 'listen_port'?"
    ]


def test_unknown_key_without_a_close_match_lists_the_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "web:\n  colour: red\n")
    assert problems_of(path) == [
        f"{path} line 2: web -> colour: unknown key; the keys here are allowed_hosts, host, password, port, uploads_max_total_mb, uploads_min_free_mb"
    ]


def test_typo_in_a_section_name(tmp_path: Path) -> None:
    path = write(tmp_path, "\n\nenhanse:\n  steps: 3\n")
    assert problems_of(path) == [f"{path} line 3: enhanse: unknown key; did you mean 'enhance'?"]


def test_wrong_types_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "watch:\n  recursive: maybe\ntrain:\n  epochs: many\nproxy: 5\n")
    assert problems_of(path) == [
        f"{path} line 2: watch -> recursive: must be true or false (got 'maybe')",
        f"{path} line 4: train -> epochs: must be a whole number (got 'many')",
        f"{path} line 5: proxy: must be a mapping of keys (value hidden: a secret)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web:\n  port: 70000\n", "line 2: web -> port: must be from 1 to 65535 (got 70000)"),
        (
            "proxy:\n  listen_port: 0\n",
            "line 2: proxy -> listen_port: must be from 1 to 65535 (got 0)",
        ),
        (
            "model:\n  input_size: 8\n",
            "line 2: model -> input_size: must be from 32 to 1024 (got 8)",
        ),
        (
            "train:\n  learning_rate: 0\n",
            "line 2: train -> learning_rate: must be greater than 0 and at most 1 (got 0)",
        ),
        (
            "proxy:\n  mode: socks\n",
            "line 2: proxy -> mode: must be one of 'regular', 'transparent' or 'wireguard' (got 'socks')",
        ),
        (
            "model:\n  weights: resnet\n",
            "line 2: model -> weights: must be imagenet, none or the path of an .h5 file (got 'resnet')",
        ),
        (
            "proxy:\n  auth: justaname\n",
            'line 2: proxy -> auth: must look like "user:password", or be null for no authentication',
        ),
    ],
)
def test_bad_values_name_the_allowed_range(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path} {expected}"]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "web:\n  port: 8081\n  host: [unclosed\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path} line 4: not valid YAML: ")


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "web:\n  port: 1\n  port: 2\n")
    assert problems_of(path) == [f"{path} line 3: web -> port: key written twice"]


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- just\n- a list\n")
    assert problems_of(path) == [
        f"{path} line 1: the file must be a mapping of keys, like 'proxy:'"
    ]


def test_partial_file_is_merged_over_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "web:\n  port: 9000\ntrain:\n  epochs: 3\n")
    config = load_config(path)
    assert config.source == path
    assert (config.web.port, config.web.host, config.web.password) == (9000, "0.0.0.0", None)
    assert (config.train.epochs, config.train.min_new_posts) == (3, 200)
    assert config.proxy.listen_port == 8080
    assert config.enhance.jpeg_quality == 92


def test_relative_watch_paths_resolve_against_data_dir(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"data_dir: {tmp_path}/d\nwatch:\n  drop_dir: in\n  output_dir: /abs/out\n"
    )
    config = load_config(path)
    assert config.data_dir == tmp_path / "d"
    assert config.watch.drop_dir == tmp_path / "d" / "in"
    assert config.watch.output_dir == Path("/abs/out")
    assert config.db_path == tmp_path / "d" / "instafly.db"
    assert config.mitmproxy_dir == tmp_path / "d" / "mitmproxy"


def test_data_dir_argument_overrides_the_file_and_moves_relative_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "data_dir: /nowhere\nwatch:\n  drop_dir: in\n")
    config = load_config(path, data_dir=tmp_path / "override")
    assert config.data_dir == tmp_path / "override"
    assert config.watch.drop_dir == tmp_path / "override" / "in"


def test_relative_data_dir_in_a_file_is_relative_to_that_file(tmp_path: Path) -> None:
    path = write(tmp_path, "data_dir: state\n")
    assert load_config(path).data_dir == tmp_path / "state"


def test_search_order_env_then_system_then_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = write(tmp_path, "web:\n  port: 1001\n", "system.yaml")
    user = write(tmp_path, "web:\n  port: 1002\n", "user.yaml")
    env = write(tmp_path, "web:\n  port: 1003\n", "env.yaml")
    monkeypatch.setattr("instaflyd.config.USER_CONFIG", user)
    assert load_config().web.port == 1002
    monkeypatch.setattr("instaflyd.config.SYSTEM_CONFIG", system)
    assert load_config().web.port == 1001
    monkeypatch.setenv("INSTAFLY_CONFIG", str(env))
    assert load_config().web.port == 1003
    assert load_config(user).web.port == 1002


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_build_config_merges_a_mapping(tmp_path: Path) -> None:
    config = build_config({"model": {"input_size": 64}}, data_dir=tmp_path)
    assert isinstance(config, Config)
    assert (config.model.input_size, config.model.weights, config.data_dir) == (
        64,
        "imagenet",
        tmp_path,
    )


def test_every_default_key_is_documented_in_place() -> None:
    """Every key of the default file has a comment above it or beside it."""
    lines = default_config_path().read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        match = re.match(r"^\s*([a-z_]+):\s*(\S.*)?$", line)
        if match and match.group(2) is not None:  # a leaf key (sections have no value)
            above = lines[number - 1].strip()
            if not above.startswith("#") and "#" not in line:
                undocumented.append(line.strip())
    assert undocumented == []


def test_default_file_and_models_agree() -> None:
    """The pydantic models require every key, so the defaults file must define exactly them."""
    values = yaml.safe_load(default_config_path().read_text())
    assert set(values) == set(Config.model_fields)
    for section, model in Config.model_fields.items():
        if isinstance(values[section], dict):
            assert set(values[section]) == set(model.annotation.model_fields), section


@pytest.mark.slow
def test_check_config_command(tmp_path: Path) -> None:
    good = write(tmp_path, "web:\n  port: 9000\n", "good.yaml")
    result = run_cli("check-config", config=good)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{good}: OK")

    bad = write(tmp_path, "web:\n  port: 70000\n  prot: 1\n", "bad.yaml")
    result = run_cli("check-config", config=bad)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{bad} line 2: web -> port: must be from 1 to 65535 (got 70000)",
        f"{bad} line 3: web -> prot: unknown key; did you mean 'port'?",
    ]


def test_other_commands_fail_with_one_line_on_a_bad_config(tmp_path: Path) -> None:
    bad = write(tmp_path, "web:\n  port: 70000\n  prot: 1\n")
    result = run_cli("stats", config=bad)
    assert result.returncode == 1
    assert result.stderr == (
        f"instaflyd: config error: {bad} line 2: web -> port: must be from 1 to 65535 (got 70000)"
        " (and 1 more; see instaflyd check-config)\n"
    )
    assert result.stdout == ""
