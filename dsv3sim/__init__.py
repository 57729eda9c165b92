"""dsv3sim: simulation and performance modelling of DeepSeek-V3-class mixture-of-experts LLMs."""

__version__ = "0.1.0"
