"""Deployment helpers that run offline (never shipped to Lambda): template preparation for moto."""
from .template import MOTO_SKIPS, TemplateError, load_packaged_template, mapping_function, prepare_for_moto

__all__ = ["MOTO_SKIPS", "TemplateError", "load_packaged_template", "mapping_function", "prepare_for_moto"]
