# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: systemd_env_quote
short_description: Quote a value for a systemd EnvironmentFile=
version_added: 1.0.0
author: celery-fleet maintainers
description:
  - Double-quotes the value and escapes C(\), C("), C($) and C(`), the characters systemd reads as
    escapes inside double quotes in an environment file (as a POSIX shell does). systemd then gives
    the process exactly the value.
options:
  _input:
    description: The value; anything else than a string is turned into one.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: A line of an environment file
  ansible.builtin.debug:
    msg: "TITLE={{ 'say \"hi\" to $USER' | celery_fleet.celery.systemd_env_quote }}"
# msg: TITLE="say \"hi\" to \$USER"
"""

RETURN = r"""
_value:
  description: The quoted value, with its double quotes.
  type: str
"""


def systemd_env_quote(value):
    """A value for a systemd EnvironmentFile=: double-quoted, with \\ " $ ` escaped."""
    text = value if isinstance(value, str) else str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
    return f'"{escaped}"'


class FilterModule:
    """systemd_env_quote."""

    def filters(self):
        return {"systemd_env_quote": systemd_env_quote}
