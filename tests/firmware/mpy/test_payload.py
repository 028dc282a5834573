# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
"""lib/payload.py: readings as the gateway's ingest topics take them (docs/storage.md), byte for byte."""

import json

import payload
from mpytest import raises

T = 1700000000000000000


def test_rows_as_db_append_takes_them():
    assert payload.row("garden-1.temperature", T, 21.5) == '["garden-1.temperature",1700000000000000000,21.5]'
    assert payload.row("a", None, 3) == '["a",null,3]'
    assert payload.row("a", T, 2.0) == '["a",1700000000000000000,2.0]'
    assert payload.row('a"b\\c', 1, True) == '["a\\"b\\\\c",1,true]'
    raises(ValueError, payload.row, "a", 1, float("nan"))
    raises(ValueError, payload.row, "a", 1, float("inf"))


def test_the_readings_of_a_wake():
    values = {"temperature": 25.0812, "battery": 3.9, "broken": None, "nan": float("nan")}
    rows = payload.rows("n", values, T, digits=2)
    assert rows == ['["n.battery",1700000000000000000,3.9]', '["n.temperature",1700000000000000000,25.08]']
    assert json.loads(payload.batch(rows)) == [["n.battery", T, 3.9], ["n.temperature", T, 25.08]]
    assert payload.batch(rows[:1]) == rows[0].encode()  # one row is sent as it is


def test_batches_stay_under_the_size_and_keep_the_order():
    rows = [payload.row(f"s{i}", T + i, i) for i in range(10)]
    size = len(rows[0]) + 1
    parts = payload.batches(rows, 3 * size + 2)
    assert [n for n, _ in parts] == [3, 3, 3, 1]
    decoded = []
    for n, body in parts:
        assert len(body) <= 3 * size + 2
        got = json.loads(body)
        decoded += got if n > 1 else [got]
    assert decoded == [[f"s{i}", T + i, i] for i in range(10)]
    assert payload.batches(rows[:1], 5) == [(1, rows[0].encode())]  # a row longer than the limit goes alone
    assert payload.batches([], 100) == []


def test_the_sensors_topic_object():
    body = payload.sensors_object({"temp": 21.456, "door": True, "gone": None}, T, digits=1)
    assert body == b'{"door":true,"temp":21.5,"ts":1700000000000000000}'
    assert payload.sensors_object({"x": 1}) == b'{"x":1}'
