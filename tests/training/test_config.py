"""Config: YAML + command-line overrides from the same dataclasses, checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import (
    BuildConfig,
    Config,
    ConfigError,
    LossConfig,
    RLRunConfig,
    from_mapping,
    load_config,
    read_yaml,
    save_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def test_yaml_then_overrides_in_both_spellings(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 7\n  batch_size: 4\noptim:\n  lr: 1.0e-3\n")
    cfg = load_config(
        Config,
        ["--config", str(path), "--optim.lr", "1e-4", "train.steps=9", "lora.enabled=true"],
    )
    assert cfg.train.steps == 9
    assert cfg.train.batch_size == 4
    assert cfg.optim.lr == pytest.approx(1e-4)  # "1e-4" is a string to YAML, a float here
    assert cfg.lora.enabled is True


def test_lists_from_the_command_line() -> None:
    cfg = load_config(
        Config, ["--data.build.queries", "heading,cloze", "data.build.include=[a/*.txt, b/*]"]
    )
    assert cfg.data.build.queries == ["heading", "cloze"]
    assert cfg.data.build.include == ["a/*.txt", "b/*"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optim.lr=2"], "optim.lr=2.0: use a value in (0, 1)"),
        (["train.batch_size=1"], "train.batch_size=1: use 2 or more"),
        (["loss.temperature=0"], "loss.temperature=0.0"),
        (["loss.infonce=0", "loss.triplet=0"], "nothing would train the embedding"),
        (["train.precision=fp8"], "use one of auto, fp32, bf16, fp16"),
        (["train.stpes=3"], "did you mean train.steps?"),
        (["train.steps=many"], "train.steps must be an integer"),
        (["data.build.queries=[heading, llm]"], "build.llm_model is empty"),
    ],
)
def test_bad_values_say_what_to_change(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(Config, args)
    assert message in str(err.value)


def test_unknown_yaml_key_is_an_error_but_other_stages_sections_are_skipped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("rl:\n  group_size: 4\nloss:\n  tmperature: 0.1\n")
    with pytest.raises(ConfigError, match=r"loss\.tmperature \(did you mean loss\.temperature\?\)"):
        load_config(Config, ["--config", str(path)])
    path.write_text("rl:\n  group_size: 4\n")
    assert load_config(Config, ["--config", str(path)]).train.steps == Config().train.steps


def test_round_trip_through_dict_and_yaml(tmp_path: Path) -> None:
    cfg = load_config(Config, ["loss.margin=0.3", "data.build.sources=[/x, /y]"])
    assert Config.from_dict(cfg.to_dict()) == cfg
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(Config, ["--config", str(tmp_path / "saved.yaml")]) == cfg


def test_sections_check_themselves() -> None:
    with pytest.raises(ConfigError, match=r"loss\.kl=-1\.0: a loss weight cannot be negative"):
        LossConfig(kl=-1.0)
    with pytest.raises(ConfigError, match=r"build\.heldout_fraction=1\.0"):
        from_mapping(BuildConfig, {"heldout_fraction": 1})
    with pytest.raises(ConfigError, match=r"train\.negatives=9 > data\.build\.negatives=8"):
        load_config(Config, ["data.build.sources=[/x]", "train.negatives=9"])


@pytest.mark.parametrize("name", ["tiny-cpu.yaml", "smollm2-135m.yaml", "qwen2.5-1.5b.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(Config, ["--config", str(CONFIGS / name)])
    assert cfg.data.build.sources or cfg.data.build.corpora
    assert "python-docs" not in cfg.data.build.corpora  # a copy of a reserved info manual
    assert cfg.loss.lm > 0 and cfg.loss.kl > 0 and cfg.loss.infonce > 0 and cfg.loss.triplet > 0
    # Each config also carries its RL stage: an rl section that the RL run reads.
    assert "rl" in read_yaml(CONFIGS / name)
    run = load_config(RLRunConfig, ["--config", str(CONFIGS / name)])
    assert run.rl.steps > 0 and run.rl.group_size >= 2 and run.rl.contrastive > 0


def test_help_lists_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_config(Config, ["--help"])
    out = capsys.readouterr().out
    assert "--loss.temperature" in out and "InfoNCE temperature" in out
    assert "--data.build.heldout_fraction" in out
