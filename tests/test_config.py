"""The settings registry (hearth.config): every setting declared with a meaning, values
and their sources from environment > config.toml > default, bad values as one error that
names the setting, the value, what is allowed and where it came from; and that nothing
outside hearth.config reads the environment."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from hearth.config import (
    DEFAULT_PORT,
    HEARTH_SET_WAIT_POLICY,
    Settings,
    env_name,
    load_settings,
    peer_environment,
    resolve,
    set_omp_wait_policy,
    shown,
)
from hearth.errors import UserInputError

PACKAGE = Path(__file__).resolve().parent.parent / "hearth"


def _home(tmp_path: Path, toml: str = "") -> dict[str, str]:
    if toml:
        (tmp_path / "config.toml").write_text(toml)
    return {"HEARTH_HOME": str(tmp_path)}


def test_every_setting_is_declared_with_a_meaning_and_one_variable() -> None:
    names = [env_name(f) for f in fields(Settings)]
    assert len(names) == len(set(names))
    for f in fields(Settings):
        assert f.metadata.get("meaning"), f"{f.name} has no meaning"
    assert env_name(next(f for f in fields(Settings) if f.name == "port")) == "HEARTH_PORT"
    assert env_name(next(f for f in fields(Settings) if f.name == "hf_endpoint")) == "HF_ENDPOINT"


def test_sources_environment_over_file_over_default(tmp_path: Path) -> None:
    env = _home(tmp_path, "port = 8080\nhost = '0.0.0.0'\ncors_origins = ['http://a']\n")
    env["HEARTH_HOST"] = "127.0.0.2"
    env["HEARTH_DEDICATED_CPU"] = "yes"
    settings, rows = resolve(env)
    assert (settings.port, settings.host, settings.cors_origins) == (
        8080,
        "127.0.0.2",
        ("http://a",),
    )
    assert settings.dedicated_cpu is True
    source = {r.name: r.source for r in rows}
    assert source["port"] == str(tmp_path / "config.toml")
    assert source["host"] == "environment (HEARTH_HOST)"
    assert source["max_queue"] == "default" and settings.max_queue == 256
    assert source["home"] == "environment (HEARTH_HOME)"
    assert [r.name for r in rows] == [f.name for f in fields(Settings)]
    # an empty variable counts as unset
    assert load_settings({**_home(tmp_path), "HEARTH_PORT": ""}).port == 8080
    assert load_settings({"HEARTH_HOME": str(tmp_path / "none")}).port == DEFAULT_PORT


@pytest.mark.parametrize(
    ("toml", "env", "want"),
    [
        ("port = 'abc'", {}, r"setting port \(.*config\.toml\) must be a whole number, got 'abc'"),
        (
            "",
            {"HEARTH_PORT": "abc"},
            r"setting port \(HEARTH_PORT\) must be a whole number, got 'abc'; fix HEARTH_PORT",
        ),
        ("port = 70000", {}, r"port .* must be in 1\.\.65535, got 70000"),
        (
            "",
            {"HEARTH_NUM_THREADS": "-1"},
            r"num_threads \(HEARTH_NUM_THREADS\) must be >= 0, got '-1'",
        ),
        ("port = 1.5", {}, r"port .* must be a whole number, got 1\.5"),
        ("port = true", {}, r"port .* must be a number, got True"),
        ("host = 5", {}, r"host .* must be a string, got 5"),
        ("cors_origins = [1]", {}, r"cors_origins .* must be a list of strings"),
        (
            "",
            {"HEARTH_DEDICATED_CPU": "maybe"},
            r"dedicated_cpu \(HEARTH_DEDICATED_CPU\) must be true or false.*got 'maybe'",
        ),
        ("bogus = 1", {}, r"unknown setting 'bogus'; allowed keys: allowed_hosts, bench_llama_cpp_path, cc"),
        ("home = '/x'", {}, r"unknown setting 'home'.*set by HEARTH_HOME only"),
        ("dedicated_cpu = true", {}, r"set by HEARTH_DEDICATED_CPU only"),
        ("port = ", {}, r"config\.toml is not valid TOML"),
    ],
)
def test_bad_values_name_setting_value_allowed_and_source(
    tmp_path: Path, toml: str, env: dict[str, str], want: str
) -> None:
    with pytest.raises(UserInputError, match=want):
        load_settings({**_home(tmp_path, toml), **env})


def test_binary_config_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserInputError, match=r"config\.toml is not valid TOML"):
        load_settings(_home(tmp_path))


def test_an_enum_setting_lists_its_choices(tmp_path: Path) -> None:
    assert load_settings({**_home(tmp_path), "HEARTH_KERNELS": "torch"}).kernels == "torch"
    with pytest.raises(
        UserInputError, match=r"kernels \(HEARTH_KERNELS\) must be one of auto, torch, got 'fast'"
    ):
        load_settings({**_home(tmp_path), "HEARTH_KERNELS": "fast"})
    with pytest.raises(UserInputError, match=r"kernels \(.*config\.toml\) must be one of auto"):
        load_settings(_home(tmp_path, "kernels = 'gpu'"))
    with pytest.raises(ValueError, match="kernels must be one of auto, torch, got 'x'"):
        Settings(kernels="x")


def test_constructed_settings_check_the_same_bounds() -> None:
    with pytest.raises(ValueError, match=r"port must be in 1\.\.65535"):
        Settings(port=0)
    with pytest.raises(ValueError, match="max_queue must be >= 1"):
        Settings(max_queue=0)


def test_derived_paths(tmp_path: Path) -> None:
    s = load_settings(_home(tmp_path))
    assert s.db_url == f"sqlite:///{tmp_path / 'hearth.db'}"
    assert s.eval_data_dir == tmp_path / "eval-data"
    assert load_settings({**_home(tmp_path), "HEARTH_EVAL_DATA": "/data"}).eval_data_dir == Path(
        "/data"
    )
    assert Settings(num_threads=3).threads == 3 and Settings().threads >= 1


def test_shown_masks_passwords_in_urls() -> None:
    assert shown("postgresql://me:secret@db/hearth") == "postgresql://me:***@db/hearth"
    assert shown("https://pypi.example/simple") == "https://pypi.example/simple"
    assert shown(Path("/x")) == "/x" and shown(("a",)) == ["a"]


def test_omp_wait_policy_set_once_and_shown_as_hearths(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert set_omp_wait_policy(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE", HEARTH_SET_WAIT_POLICY: "1"}
    _, rows = resolve({**env, **_home(tmp_path)})
    (row,) = [r for r in rows if r.name == "omp_wait_policy"]
    assert (row.value, row.source) == ("PASSIVE", "hearth (set before torch loads)")
    assert peer_environment(env) == {}
    with pytest.raises(UserInputError, match="HEARTH_DEDICATED_CPU"):
        set_omp_wait_policy({"HEARTH_DEDICATED_CPU": "2"})


def _reads_environment(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            lines.append(node.lineno)
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in ("environ", "getenv") for a in node.names)
        ):
            lines.append(node.lineno)
    return lines


def test_nothing_outside_config_reads_the_environment() -> None:
    """model/ included: its kernel switches and the C toolchain (CC, XDG_CACHE_HOME) are
    settings that arrive as values."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel == Path("config.py"):
            continue
        for line in _reads_environment(ast.parse(path.read_text())):
            offenders.append(f"hearth/{rel}:{line}")
    assert offenders == []
