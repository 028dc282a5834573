# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
"""lib/commands.py."""

import commands


def test_an_interval_command():
    assert commands.interval_s("cmd/n/interval", b"120") == 120
    assert commands.interval_s("cmd/n/interval", b"90.5") == 90
    assert commands.interval_s("cmd/n/interval", b"5") is None  # below the bound
    assert commands.interval_s("cmd/n/interval", b"5", low=1) == 5
    assert commands.interval_s("cmd/n/interval", b"soon") is None
    assert commands.interval_s("cmd/n/reboot", b"1") is None
    assert commands.interval_s(None, b"1") is None
