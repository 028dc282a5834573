# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
# The little of pytest that these tests need, in MicroPython (which has no pytest).


def raises(kind, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except kind as e:
        return e
    raise AssertionError(f"{fn} did not raise {kind.__name__}")


class FakeTransport:
    """A gateway played by a function: `answer(sent_bytes)` returns the frames it sends back."""

    def __init__(self, answer):
        self.answer = answer
        self.sent = []
        self.inbox = []

    def send(self, data):
        self.sent.append(bytes(data))
        self.inbox += self.answer(bytes(data))

    def receive(self, timeout_ms):
        return self.inbox.pop(0) if self.inbox else None
