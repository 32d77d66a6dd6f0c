"""options.py holds every server setting's one default; the command line's flags take theirs
from it."""

from __future__ import annotations

import ast
import inspect
from dataclasses import fields

import pytest

from fastserve import cli, options
from fastserve.options import ServerOptions

SETTINGS = {option.name for option in fields(ServerOptions)}
NAMED_LIKE_A_SETTING = [flag for flag in cli.FLAGS if flag.name in SETTINGS]


def test_default_is_each_settings_default() -> None:
    made = ServerOptions()
    for name in SETTINGS:
        assert options.default(name) == getattr(made, name), name
    assert options.default("port") == 8500
    assert options.default("saved_model_tags") == ("serve",)
    assert options.default("models") == ()  # from its default_factory


def test_default_of_something_not_a_setting_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        options.default("model_name")  # a flag, but not a server setting


def test_most_flags_name_a_setting() -> None:
    # Guards the checks below from passing over nothing.
    assert len(NAMED_LIKE_A_SETTING) > 30


@pytest.mark.parametrize("flag", NAMED_LIKE_A_SETTING, ids=lambda flag: flag.name)
def test_a_flag_named_like_a_setting_has_its_default(flag: cli.Flag) -> None:
    value = options.default(flag.name)
    assert flag.default == (",".join(value) if isinstance(value, tuple) else value)


def test_a_flag_named_like_a_setting_takes_its_default_from_options() -> None:
    """Not only equal today: cli.py says OPTION, so a default changed in options.py changes
    the flag's too."""
    tree = ast.parse(inspect.getsource(cli))
    literal, checked = [], 0
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Flag"):
            continue
        name = node.args[0]
        assert isinstance(name, ast.Constant)
        if name.value not in SETTINGS:
            continue
        default = (
            node.args[2]
            if len(node.args) > 2
            else next(k.value for k in node.keywords if k.arg == "default")
        )
        checked += 1
        if not (isinstance(default, ast.Name) and default.id == "OPTION"):
            literal.append(name.value)
    assert checked == len(NAMED_LIKE_A_SETTING)
    assert literal == []
