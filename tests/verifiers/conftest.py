"""Fixtures live in verifier_support.py (a unique module name: several test folders import their helpers)."""

from verifier_support import *  # noqa: F403
