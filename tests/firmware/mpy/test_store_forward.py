# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
"""lib/store_forward.py, on the file system of the port it runs on (the board's flash)."""

import os

import payload
from store_forward import Spool


def rows(start, n):
    return [payload.row("s", start + i, start + i) for i in range(n)]


def test_rows_wait_in_order_and_leave_when_acknowledged():
    spool = Spool("spool-a.ndjson", max_rows=100)
    assert spool.rows() == [] and len(spool) == 0
    spool.append(rows(0, 3))
    spool.append(rows(3, 2))
    assert spool.rows() == rows(0, 5)
    spool.remove_first(2)
    assert spool.rows() == rows(2, 3)
    spool.remove_first(3)
    assert spool.rows() == []
    assert "spool-a.ndjson" not in os.listdir()


def test_a_full_spool_drops_the_oldest():
    spool = Spool("spool-b.ndjson", max_rows=4)
    spool.append(rows(0, 3))
    spool.append(rows(3, 3))
    assert spool.rows() == rows(2, 4)
    assert spool.dropped == 2
    spool.clear()
    assert spool.rows() == []


def test_a_line_cut_off_by_a_power_loss_is_skipped():
    spool = Spool("spool-c.ndjson")
    spool.append(rows(0, 2))
    with open("spool-c.ndjson", "a") as f:
        f.write('\n["s",2,')  # what append() had written of a row when the power went
    assert spool.rows() == rows(0, 2)
    spool.append(rows(5, 1))  # after the broken line: still read
    assert spool.rows() == rows(0, 2) + rows(5, 1)
