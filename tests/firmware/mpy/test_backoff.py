# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
"""lib/backoff.py."""

import backoff


def test_delays_double_up_to_the_cap_less_the_jitter():
    assert [backoff.delay_ms(n, 1000, 60000, rand=0) for n in range(8)] == [
        1000,
        2000,
        4000,
        8000,
        16000,
        32000,
        60000,
        60000,
    ]
    assert backoff.delay_ms(2, 1000, 60000, jitter=0.25, rand=0.5) == 3500
    assert backoff.delay_ms(40, 1000, 60000, rand=0) == 60000
    assert 750 <= backoff.delay_ms(0) <= 1000


def test_wakes_without_the_radio_grow_with_the_failures():
    assert [backoff.wakes_to_skip(n) for n in range(8)] == [0, 0, 1, 3, 7, 15, 16, 16]
    assert backoff.wakes_to_skip(100, cap=5) == 5
