"""knowlm_utils.config (YAML → dataclasses) and knowlm_utils.fileio (atomic writes)."""

import json
from dataclasses import dataclass

import pytest

from knowlm_utils.config import ConfigError, apply_overrides, describe, field, from_dict, load_config
from knowlm_utils.fileio import atomic_open, write_json_atomic
from knowlm_utils.workdir import ARTIFACTS, MissingArtifactError, require


@dataclass
class Inner:
    rate: float = field(0.5, help="a rate")


@dataclass
class Outer:
    name: str = field(help="required name")
    steps: int = field(3, help="steps")
    inner: Inner = field(default_factory=Inner, help="nested")
    items: list[Inner] = field(default_factory=list, help="list of nested")


def test_load_nested_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: demo\ninner: {rate: 0.1}\nitems: [{rate: 1.0}, {}]\n")
    cfg = load_config(Outer, p, ["steps=7", "inner.rate=0.25"])
    assert cfg == Outer(name="demo", steps=7, inner=Inner(0.25), items=[Inner(1.0), Inner(0.5)])


def test_exponent_floats_without_a_dot_load_as_numbers(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as a string; a learning rate written that way must still load
    p = tmp_path / "c.yaml"
    p.write_text("name: demo\ninner: {rate: 3e-4}\n")
    assert load_config(Outer, p, ["items=[{rate: 1E+2}, {rate: .5}]"]).inner.rate == pytest.approx(3e-4)
    assert load_config(Outer, p, ["items=[{rate: 1E+2}, {rate: .5}]"]).items == [Inner(100.0), Inner(0.5)]
    assert apply_overrides({}, ["a=1e", "b=1.2.3", "c=1_000", "d=-2e-3"]) == {"a": "1e", "b": "1.2.3", "c": 1000,
                                                                            "d": -0.002}
    import yaml
    assert yaml.safe_load("x: 1e-3") == {"x": "1e-3"}  # the stock SafeLoader is left as it was


def test_overrides_are_parsed_as_data_never_evaluated():
    data = apply_overrides({}, ["a=__import__('os').getcwd()", "b=[1, 2]", "c.d=yes", "e="])
    assert data == {"a": "__import__('os').getcwd()", "b": [1, 2], "c": {"d": True}, "e": ""}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["novalue"])


def test_errors_name_file_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nitems: [{rate: 1, speed: 2}]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml\.items\[0\].*speed"):
        load_config(Outer, p)
    with pytest.raises(ConfigError, match="missing required.*name"):
        from_dict(Outer, {"steps": 1})
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Outer, p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_describe_lists_help():
    rows = {name: (default, help_) for name, default, help_ in describe(Outer)}
    assert rows["name"] == ("(required)", "required name") and rows["steps"][0] == "3"


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("partial")
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_missing_artifact_names_its_producer(tmp_path):
    with pytest.raises(MissingArtifactError, match=ARTIFACTS["corpus"].producer):
        require(tmp_path, "corpus")
    (tmp_path / "corpus").mkdir()
    assert require(tmp_path, "corpus") == tmp_path / "corpus"
