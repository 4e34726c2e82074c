# Copyright (c) celery-fleet maintainers
# MIT License

"""The input that the filters of a host's workers share: C(celery_workers) and C(celery_workers_overrides)."""

from __future__ import annotations


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    DOCUMENTATION = r"""
options:
  _input:
    description: The list C(celery_workers).
    type: list
    elements: dict
    required: true
  overrides:
    description: C(celery_workers_overrides), worker name to the fields that replace the entry's.
    type: dict
    required: true
"""
