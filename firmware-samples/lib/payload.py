# Readings as the gateway's ingest topics want them: `db/append/<TABLE>` takes a JSON row `[name, time_ns, value]`
# or an array of rows; `sensors/<device>` takes one JSON object of fields. The JSON is written by hand: it is
# short, the same on every MicroPython version (json.dumps' separators came late) and never holds NaN.
import math


def _number(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "%d" % value
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise ValueError("not a finite number")
    text = repr(v)
    return text if ("." in text or "e" in text) else text + ".0"


def _string(s):
    out = '"'
    for ch in s:
        if ch in '"\\':
            out += "\\" + ch
        elif ord(ch) < 0x20:
            out += "\\u%04x" % ord(ch)
        else:
            out += ch
    return out + '"'


def row(name, time_ns, value):
    """One reading as JSON text; `time_ns` None lets the gateway use the arrival time."""
    return "[%s,%s,%s]" % (_string(name), "null" if time_ns is None else "%d" % time_ns, _number(value))


def _fields(values, digits):
    """(field, JSON number) for each field of `values` that holds a finite number, by name: a sensor that failed
    reads None and is left out."""
    for field in sorted(values):
        value = values[field]
        if value is None:
            continue
        if digits is not None and isinstance(value, float):
            value = round(value, digits)
        try:
            yield field, _number(value)
        except ValueError:
            continue


def rows(prefix, values, time_ns, digits=None):
    """The readings of one wake as JSON rows: series `<prefix>.<field>`."""
    when = "null" if time_ns is None else "%d" % time_ns
    return ["[%s,%s,%s]" % (_string(prefix + "." + field), when, number) for field, number in _fields(values, digits)]


def batch(row_texts):
    """JSON rows as one `db/append` message body."""
    if len(row_texts) == 1:
        return row_texts[0].encode()
    return ("[" + ",".join(row_texts) + "]").encode()


def batches(row_texts, max_bytes):
    """The rows split into message bodies of at most `max_bytes` (a single longer row goes alone): (count, body)
    pairs, in order, so the caller knows how many rows each acknowledgement covers."""
    out = []
    start = 0
    size = 2
    for i in range(len(row_texts)):
        n = len(row_texts[i]) + 1
        if i > start and size + n > max_bytes:
            out.append((i - start, batch(row_texts[start:i])))
            start = i
            size = 2
        size += n
    if start < len(row_texts):
        out.append((len(row_texts) - start, batch(row_texts[start:])))
    return out


def sensors_object(values, ts_ns=None, digits=None):
    """The `sensors/<device>` payload: {"field": value, ..., "ts": time_ns}; the gateway makes `<device>.<field>`
    series in its sensors table."""
    parts = ["%s:%s" % (_string(field), number) for field, number in _fields(values, digits)]
    if ts_ns is not None:
        parts.append('"ts":%d' % ts_ns)
    return ("{" + ",".join(parts) + "}").encode()
