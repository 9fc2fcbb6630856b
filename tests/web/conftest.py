"""Fixtures live in web_support.py (a unique module name: several test folders import their helpers)."""

from web_support import *  # noqa: F403
