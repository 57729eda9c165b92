"""L0: frozen configuration dataclasses and their loaders (no torch)."""

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.model import ModelConfig, RopeScaling, from_dict, load_model_config

__all__ = ["ConfigError", "ModelConfig", "RopeScaling", "from_dict", "load_model_config"]
