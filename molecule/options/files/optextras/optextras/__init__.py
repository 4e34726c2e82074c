"""Installed from a git repository by the role (molecule/options, opt-worker1); optapp.extras reports it."""

from importlib.metadata import version

VERSION = version("optextras")
