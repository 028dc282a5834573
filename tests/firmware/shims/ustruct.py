"""`ustruct` under CPython."""

from struct import *  # noqa: F403
