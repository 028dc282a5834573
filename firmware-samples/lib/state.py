# What a node remembers from one wake to the next: the gateway's address, failure counts, topic ids. On the ESP32
# in RTC memory, which keeps its contents through deep sleep and is never worn out; on boards without it (the
# Pico W) in a small file, written only when something changed, to spare the flash.
import json


def _rtc_memory():
    try:
        import machine

        rtc = machine.RTC()
        if hasattr(rtc, "memory"):
            return rtc
    except (ImportError, AttributeError):
        pass
    return None


class State:
    def __init__(self, path="state.json", use_rtc=True):
        self.path = path
        self.rtc = _rtc_memory() if use_rtc else None
        raw = None
        try:
            if self.rtc is not None:
                raw = bytes(self.rtc.memory())
            else:
                with open(path) as f:
                    raw = f.read()
        except OSError:
            pass
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:  # never written since power-on (or by an older firmware)
            data = {}
        self.data = data if isinstance(data, dict) else {}
        self._written = json.dumps(self.data)

    def get(self, key, default=None):
        return self.data.get(key, default)

    def __getitem__(self, key):
        return self.data[key]

    def __setitem__(self, key, value):
        self.data[key] = value

    def pop(self, key, default=None):
        return self.data.pop(key, default)

    def save(self):
        text = json.dumps(self.data)
        if text == self._written:
            return
        if self.rtc is not None:
            raw = text.encode()
            if len(raw) > 2048:  # the ESP32's RTC user memory
                raise ValueError("state too large for RTC memory")
            self.rtc.memory(raw)
        else:
            with open(self.path, "w") as f:
                f.write(text)
        self._written = text
