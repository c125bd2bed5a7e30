"""keyorch: an open-source key orchestrator."""

__version__ = "0.1.0"
