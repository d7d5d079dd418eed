"""Case files: schemas, validation, ``--set`` overrides and TOML output.

See :doc:`/case_files`. A problem kind declares its :class:`Schema` with
:func:`make_schema`; :func:`load_case` turns a TOML file into a validated :class:`Case`.
"""
from ot_pde.config.case import Case, load_case, load_case_text, parse_override, to_toml
from ot_pde.config.schema import (
    COMMON_SECTIONS,
    FIELD_TYPES,
    OVERRIDE_SOURCE,
    REQUIRED,
    Field,
    Schema,
    Section,
    make_schema,
)

__all__ = [
    "COMMON_SECTIONS",
    "FIELD_TYPES",
    "OVERRIDE_SOURCE",
    "REQUIRED",
    "Case",
    "Field",
    "Schema",
    "Section",
    "load_case",
    "load_case_text",
    "make_schema",
    "parse_override",
    "to_toml",
]
