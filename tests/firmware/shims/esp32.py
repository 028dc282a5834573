"""`esp32` under CPython: present so that a sample can tell the board; nothing in it is used."""

HEAP_DATA = 4


def raw_temperature() -> int:
    return 120
