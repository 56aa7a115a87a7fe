"""Config files: YAML whose keys are the long flag names (``data-dir: /srv/edgek``).

Flags given on the command line win over the file; the file wins over defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = Path("/etc/edgek/config.yaml")


class ConfigError(ValueError):
    """A config file that cannot be used; str(e) says why, in one line."""


def load_config(path: Path | None) -> dict[str, Any]:
    """The config file's settings keyed by flag name with ``-`` (empty when the default file
    is absent; an explicitly named missing file is an error)."""
    target = path or DEFAULT_CONFIG
    if not target.exists():
        if path is not None:
            raise ConfigError(f"config file {target} does not exist")
        return {}
    try:
        data = yaml.safe_load(target.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config file {target}: {e}".replace("\n", " ")) from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {target} must be a mapping of flag names to values")
    return {str(k).lstrip("-").replace("_", "-"): v for k, v in data.items()}


def merge(flags: dict[str, Any], file_values: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """Flags (None = not given) over file values. Unknown file keys are an error."""
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    out = {k: v for k, v in file_values.items()}
    for name, value in flags.items():
        if value is not None and value != []:
            out[name] = value
    return out
