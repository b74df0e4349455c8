"""Training configuration: one schema module per stage, and the loader they share.

- :mod:`training.config.sft`: the shared sections and the SFT run's :class:`Config`;
- :mod:`training.config.rl`: the ``rl`` section and :class:`RLRunConfig`;
- :mod:`training.config.loader`: YAML files and ``--a.b V`` / ``a.b=V`` overrides
  into checked dataclasses, and back to YAML.
"""

from __future__ import annotations

from training.config.data import BuildConfig, DataConfig
from training.config.loader import (
    ConfigError,
    add_field_arguments,
    build_parser,
    check,
    from_mapping,
    help_text,
    load_config,
    overrides_from_args,
    read_yaml,
    save_config,
)
from training.config.rl import EnvConfig, RLConfig, RLRunConfig
from training.config.sft import (
    Config,
    EvalConfig,
    LoraConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

__all__ = [
    "BuildConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EnvConfig",
    "EvalConfig",
    "LoraConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RLConfig",
    "RLRunConfig",
    "TrainConfig",
    "add_field_arguments",
    "build_parser",
    "check",
    "from_mapping",
    "help_text",
    "load_config",
    "overrides_from_args",
    "read_yaml",
    "save_config",
]
