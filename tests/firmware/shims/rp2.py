"""`rp2` under CPython: present so that a sample can tell the board; nothing in it is used."""


def country(code: str | None = None) -> str:
    return code or "XX"
