"""Experiments: each `experiments/<name>.py` defines `get_config(arg) -> ConfigDict` (see ARCHITECTURE.md)."""
