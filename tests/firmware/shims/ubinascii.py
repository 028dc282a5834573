"""`ubinascii` under CPython."""

from binascii import *  # noqa: F403
