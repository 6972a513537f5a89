"""districts.yaml: its settings as frozen dataclasses, validated all at once, and the edits
onboarding makes to it. Imports only `analytics/` (the id patterns and band names).

`config.secrets` says which environment values are secrets and masks them.

The code is in `config/districts.py`; its public names are here, so `import config;
config.load(path)` reads the file wherever it is called from.
"""
from config.districts import (
    DEFAULT_BANDS,
    DEFAULTS,
    ClixOptions,
    StandardsOptions,
    Source,
    ConfigError,
    District,
    Settings,
    add_district_text,
    load,
    parse,
    set_enabled_text,
    write_text_checked,
    yaml_load,
)

__all__ = ["DEFAULT_BANDS", "DEFAULTS", "ClixOptions", "ConfigError", "StandardsOptions", "Source", "District", "Settings", "add_district_text", "load", "parse",
           "set_enabled_text", "write_text_checked", "yaml_load"]
