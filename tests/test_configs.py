"""Every shipped config loads into its typed class; the StageConfig base validates types and
ranges with one-line errors; `--help` lists every field and `--print-config` round-trips."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from knowlm_utils import cli
from knowlm_utils.config import (ConfigError, Section, StageConfig, commented_yaml, describe, field, from_dict,
                                 parse_overrides)
from knowlm_utils.launch import parse_with_deepspeed, read_deepspeed_config, resolve_auto

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted((ROOT / "configs").rglob("*.yaml"))
# config-driven commands and the argv that reaches their config's --help
COMMAND_HELP = {"corpus": ["corpus", "build"], "tokenizer": ["tokenizer", "train"], "chunk": ["chunk"],
                "preprocess": ["preprocess"], "pretrain": ["pretrain"], "ie": ["ie", "build"], "sft": ["sft"]}


def test_configs_are_grouped_by_stage():
    folders = {p.name for p in (ROOT / "configs").iterdir() if p.is_dir()}
    assert folders == set(cli.CONFIG_CLASSES) | {"deepspeed"}
    assert not list((ROOT / "configs").glob("*.yaml")), "YAMLs live under configs/<stage>/"
    assert all(p.parent.parent == ROOT / "configs" for p in YAMLS)
    assert {p.parent.name for p in YAMLS} == set(cli.CONFIG_CLASSES)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_yaml_loads_and_print_config_round_trips(path):
    cls = cli.config_class(path.parent.name)
    cfg = cls.from_yaml(path)
    assert isinstance(cfg, StageConfig) and cfg.base_dir == str(path.parent.resolve())
    data = yaml.safe_load(commented_yaml(cfg))
    assert from_dict(cls, {**data, "base_dir": cfg.base_dir}) == cfg
    if path.parent.name == "pretrain":
        from knowlm_utils.train.deepspeed import resolve_deepspeed

        resolve_deepspeed(cfg.deepspeed, "cpu" if cfg.device == "cpu" else "cuda", cfg)  # file exists, expands


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_every_deepspeed_json_parses_in_deepspeed(path):
    cfg = read_deepspeed_config(path)
    assert cfg["zero_optimization"]["stage"] in (0, 1, 2, 3)
    parse_with_deepspeed(resolve_auto(cfg, micro_batch=8, hidden_size=256, lr=1e-4))


@pytest.mark.parametrize("command", sorted(COMMAND_HELP))
def test_help_lists_every_config_field(command, capsys):
    module, name = cli.CONFIG_CLASSES[command].split(":")
    cls = cli.config_class(command)
    for argv in {tuple(COMMAND_HELP[command]), (command,)}:
        with pytest.raises(SystemExit) as exit_:
            cli.main([*argv, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        for key, default, help_ in describe(cls):
            assert f"  {key} (" in text, f"`knowlm {' '.join(argv)} --help` does not list {key}"
            assert help_.split()[0] in text


@pytest.mark.parametrize("command", sorted(COMMAND_HELP))
def test_print_config_without_a_file_prints_the_defaults(command, capsys):
    assert cli.main([*COMMAND_HELP[command], "--print-config"]) == 0
    text = capsys.readouterr().out
    data = yaml.safe_load(text)
    cls = cli.config_class(command)
    required = [k for k, d, _ in describe(cls) if d == "(required)" and "." not in k and "[]" not in k]
    if required:
        assert all(data[k] is None for k in required) and "REQUIRED" in text
    else:  # nothing required: the printed defaults are a config that loads as it is
        assert from_dict(cls, data) == cls()
    for key, default, _ in describe(cls):
        if default != "(required)" and "." not in key and "[]" not in key and key != "base_dir":
            assert repr(data[key]) == default or data[key] == yaml.safe_load(default.replace("None", "null")), key


def test_print_config_of_a_file_applies_overrides(capsys):
    path = ROOT / "configs" / "preprocess" / "sample.yaml"
    assert cli.main(["preprocess", str(path), "-o", "seq_length=512", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seq_length"] == 512


@dataclass
class Inner(Section):
    rate: float = field(0.5, gt=0, le=1, help="a rate")


@dataclass
class Demo(StageConfig):
    name: str = field(help="a name")
    steps: int = field(3, ge=1, help="steps")
    mode: str = field("a", choices=("a", "b"), help="mode")
    shares: dict[str, float] = field(default_factory=dict, ge=0, help="type -> share")
    tags: list[str] = field(default_factory=list, help="tags")
    limit: int | None = field(None, ge=0, help="optional limit")
    inner: Inner = field(default_factory=Inner, help="nested")
    items: list[Inner] = field(default_factory=list, help="list of nested")
    workdir: str | None = field(None, help="base of relative paths")


@pytest.mark.parametrize("data, message", [
    ({"name": 5}, "name: expected a string, got int 5"),
    ({"name": "x", "steps": 256.7}, "steps: expected an integer, got float 256.7"),
    ({"name": "x", "steps": True}, "steps: expected an integer, got bool True"),
    ({"name": "x", "steps": "100"}, "steps: expected an integer, got str '100'"),
    ({"name": "x", "steps": 0}, "steps: must be >= 1, got 0"),
    ({"name": "x", "mode": "c"}, r"mode: must be one of \['a', 'b'\], got 'c'"),
    ({"name": "x", "shares": ["zh", "en"]}, "shares: expected a mapping, got list"),
    ({"name": "x", "shares": {"zh": -1}}, "shares.zh: must be >= 0, got -1"),
    ({"name": "x", "shares": {"zh": float("nan")}}, "shares.zh: expected a finite number"),
    ({"name": "x", "tags": "zh"}, "tags: expected a list, got str 'zh'"),
    ({"name": "x", "limit": -1}, "limit: must be >= 0, got -1"),
    ({"name": "x", "inner": 5}, "inner: expected a mapping of Inner fields, got int 5"),
    ({"name": "x", "inner": {"rate": 0}}, r"Demo\.inner: rate: must be > 0, got 0"),
    ({"name": "x", "items": [{"rate": 2}]}, r"items\[0\]: rate: must be <= 1, got 2"),
    ({"name": None}, "name: a value of type str is required, got null"),
    ({"name": "x" * 10_000, "steps": "y" * 10_000}, r"steps: expected an integer, got str 'yyy.{0,60}'$"),
])
def test_types_and_ranges_are_checked_with_the_key_named(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Demo, data, where="Demo")


def test_direct_construction_is_validated_too_and_paths_resolve(tmp_path):
    with pytest.raises(ValueError, match="steps: must be >= 1"):
        Demo(name="x", steps=0)
    cfg = Demo(name="x", inner={"rate": 0.25}, base_dir=str(tmp_path))
    assert cfg.inner == Inner(0.25)
    assert cfg.path("a/b") == tmp_path / "a" / "b" and cfg.path("/abs") == Path("/abs")
    assert cfg.with_overrides({"workdir": "wd"}).path("x") == tmp_path / "wd" / "x"
    # the workdir itself, and paths that belong beside the YAML, are not taken from the workdir
    in_wd = cfg.with_overrides({"workdir": "../runs/wd"})
    assert in_wd.path(in_wd.workdir, in_workdir=False) == (tmp_path / ".." / "runs" / "wd").resolve()
    assert in_wd.path("x") == (tmp_path / ".." / "runs" / "wd" / "x").resolve()
    assert in_wd.path("notebooks", in_workdir=False) == tmp_path / "notebooks"
    assert cfg.with_overrides(["steps=7", "inner.rate=0.5"]).steps == 7 and cfg.steps == 3
    with pytest.raises(ConfigError, match="steps: must be >= 1"):
        cfg.with_overrides(["steps=0"])


def test_from_yaml_sets_base_dir_and_overrides_parse_as_yaml(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text("name: demo\ntags: [a]\n")
    cfg = Demo.from_yaml(p, ["tags=[b, c]", "inner.rate=0.1", "limit=null"])
    assert (cfg.base_dir, cfg.tags, cfg.inner.rate, cfg.limit) == (str(tmp_path), ["b", "c"], 0.1, None)
    assert Demo.load(cfg) is cfg and Demo.load(str(p)).name == "demo"
    with pytest.raises(ConfigError, match=r"override 'tags=\[unclosed': the value is not valid YAML"):
        Demo.from_yaml(p, ["tags=[unclosed"])
    with pytest.raises(ConfigError, match="dotted field name"):
        parse_overrides(["a..b=1"])
    with pytest.raises(ConfigError, match=r"d\.yaml: unknown key\(s\) \['nmae'\]"):
        Demo.from_yaml(p, ["nmae=x"])
    assert json.loads(json.dumps(cfg.to_dict()))["inner"] == {"rate": 0.1}
    assert list(cfg.to_dict())[-1] == "base_dir"


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("corpus_dir: c\ntokenizer: t\nworkers: 2.5\n")
    assert cli.main(["preprocess", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "workers: expected an integer, got float 2.5" in err
    assert cli.main(["preprocess", str(bad), "-o", "workers=[1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid YAML" in err
    assert cli.main(["preprocess"]) == 2
    assert "give a CONFIG.yaml" in capsys.readouterr().err


def test_make_sft_long_chains_each_leg_to_the_adapter_of_the_one_before(tmp_path):
    """`make sft-long` runs the long CPU recipe's legs in order; every leg's config starts from the
    adapter the leg before it writes, and every leg is restartable (resume_from=latest)."""
    import shlex
    import subprocess

    dry = subprocess.run(["make", "-n", "sft-long", f"WORKDIR={tmp_path}", "STAMP=Makefile"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    legs = []
    for line in dry.splitlines():
        if "knowlm sft " in line:
            argv = shlex.split(line.split("else ", 1)[1].split(";")[0])
            assert argv[1:2] == ["sft"] and set(argv[3::2]) == {"-o"}, argv
            cfg = cli.config_class("sft").from_yaml(ROOT / argv[2], overrides=argv[4::2])
            legs.append(cfg)
            assert cfg.resume_from == "latest" and cfg.workdir == str(tmp_path)
    assert [c.output_dir for c in legs] == ["sft/cpu-long-grouped"] + [f"sft/cpu-long-stage{i}" for i in range(2, 6)]
    assert legs[0].init_adapter is None and legs[0].group_by_length == 16
    for before, leg in zip(legs, legs[1:]):
        assert leg.init_adapter == f"{before.output_dir}/final/adapter", leg.output_dir
    assert f"--adapter {tmp_path}/sft/cpu-long-stage5/final/adapter" in dry.replace("\\\n", "")
