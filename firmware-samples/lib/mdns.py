# A one-shot DNS-SD querier (RFC 6762 §5.1, RFC 6763) in plain MicroPython: finds `_mqtt._tcp` services
# (PTR -> SRV -> A, with the TXT settings) without binding port 5353, so it works next to the firmware's own mDNS
# responder, which holds that port on the ESP32 and the Pico W.
#
# Queries go from an ephemeral source port: RFC 6762 §6.7 then has responders answer by unicast to that port,
# repeating the query id and question. A responder that ignores §6.7 and answers only by multicast to port 5353 is
# not heard here (only a socket bound to 5353 could hear it); the caller then falls back to a configured address.
import struct

from clock import remaining_ms, ticks_add, ticks_ms

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353

A = 1
PTR = 12
TXT = 16
AAAA = 28
SRV = 33
ANY = 255
CLASS_IN = 1
QU = 0x8000  # "unicast response requested" in a question's class (§5.4)
CACHE_FLUSH = 0x8000  # the same bit in a record's class (§10.2)


def encode_name(name):
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        if not raw or len(raw) > 63:
            raise ValueError("bad DNS label in %r" % name)
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def build_query(questions, qid=0, unicast=True):
    """A query message for [(name, qtype), ...]. `qid` should be non-zero from an ephemeral port: the answer repeats
    it (§6.7), which tells our answer from others."""
    out = bytearray(struct.pack("!HHHHHH", qid, 0, len(questions), 0, 0, 0))
    qclass = CLASS_IN | (QU if unicast else 0)
    for name, qtype in questions:
        out += encode_name(name)
        out += struct.pack("!HH", qtype, qclass)
    return bytes(out)


def read_name(data, offset):
    """(name, offset after it) for the name at `offset`, following compression pointers (RFC 1035 §4.1.4)."""
    labels = []
    end = None
    jumps = 0
    while True:
        if offset >= len(data):
            raise ValueError("name runs past the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise ValueError("truncated compression pointer")
            if end is None:
                end = offset + 2
            jumps += 1
            if jumps > 32:  # a pointer loop in a hostile or broken packet
                raise ValueError("compression loop")
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise ValueError("unknown label type")
        offset += 1
        if length == 0:
            break
        if offset + length > len(data):
            raise ValueError("label runs past the message")
        labels.append(bytes(data[offset : offset + length]).decode())
        offset += length
    return ".".join(labels), (end if end is not None else offset)


def parse_txt(rdata):
    """TXT strings as a dict (RFC 6763 §6): `key=value` -> str, a bare `key` -> True; keys are case-insensitive,
    the first occurrence wins."""
    out = {}
    i = 0
    while i < len(rdata):
        n = rdata[i]
        item = bytes(rdata[i + 1 : i + 1 + n])
        i += 1 + n
        if not item:
            continue
        eq = item.find(b"=")
        key = (item if eq < 0 else item[:eq]).decode().lower()
        if key and key not in out:
            out[key] = True if eq < 0 else item[eq + 1 :].decode()
    return out


def parse(data):
    """(query id, flags, records) of a DNS message; records are (name, type, ttl, value) from the answer, authority
    and additional sections, with value a name (PTR), (priority, weight, port, target) (SRV), a dict (TXT), a dotted
    address (A) or the raw bytes. Names are compared case-insensitively, so they come lower-cased."""
    if len(data) < 12:
        raise ValueError("shorter than a DNS header")
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data, 0)
    offset = 12
    for _ in range(qd):
        _, offset = read_name(data, offset)
        offset += 4
    records = []
    for _ in range(an + ns + ar):
        name, offset = read_name(data, offset)
        if offset + 10 > len(data):
            raise ValueError("truncated record")
        rtype, _rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        end = offset + rdlength
        if end > len(data):
            raise ValueError("record data runs past the message")
        if rtype == PTR:
            value = read_name(data, offset)[0].lower()
        elif rtype == SRV:
            priority, weight, port = struct.unpack_from("!HHH", data, offset)
            value = (priority, weight, port, read_name(data, offset + 6)[0].lower())
        elif rtype == TXT:
            value = parse_txt(data[offset:end])
        elif rtype == A and rdlength == 4:
            value = "%d.%d.%d.%d" % tuple(data[offset:end])
        else:
            value = bytes(data[offset:end])
        records.append((name.lower(), rtype, ttl, value))
        offset = end
    return qid, flags, records


def services(records, service):
    """The instances of `service` that `records` describe: dicts with instance, host, port, address (None while no A
    record is known) and txt ({} while no TXT record is known), in the order their PTR records came. A record with
    TTL 0 is a goodbye (§10.1) and withdraws what it names."""
    service = service.lower().rstrip(".")
    ptr, srv, txt, addr, gone = [], {}, {}, {}, set()
    for name, rtype, ttl, value in records:
        if ttl == 0:
            gone.add((name, rtype, value if rtype == PTR else None))
        elif rtype == PTR and name == service and value not in ptr:
            ptr.append(value)
        elif rtype == SRV and name not in srv:
            srv[name] = value
        elif rtype == TXT and name not in txt:
            txt[name] = value
        elif rtype == A and name not in addr:
            addr[name] = value
    found = []
    for instance in ptr:
        if (service, PTR, instance) in gone or (instance, SRV, None) in gone:
            continue
        s = srv.get(instance)
        found.append(
            {
                "instance": instance,
                "host": s[3] if s else None,
                "port": s[2] if s else None,
                "address": addr.get(s[3]) if s else None,
                "txt": txt.get(instance, {}),
            }
        )
    return found


def _random_id():
    try:
        import os

        raw = os.urandom(2)
        return (raw[0] << 8 | raw[1]) or 1
    except (ImportError, AttributeError, NotImplementedError):
        return ticks_ms() & 0xFFFF or 1


class Querier:
    """One UDP socket on an ephemeral port: sends one-shot queries to the mDNS group and gathers the unicast
    answers (§6.7) that repeat the query id."""

    def __init__(self, group=MDNS_GROUP, port=MDNS_PORT):
        import socket

        self.address = socket.getaddrinfo(group, port)[0][-1]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(socket.getaddrinfo("0.0.0.0", 0)[0][-1])
        ttl_option = getattr(socket, "IP_MULTICAST_TTL", None)
        if ttl_option is not None:
            try:
                # §11: mDNS packets carry IP TTL 255 so that a receiver can tell they came from the local link.
                self.sock.setsockopt(socket.IPPROTO_IP, ttl_option, 255)
            except (OSError, TypeError):
                pass
        self.records = []

    def ask(self, questions, timeout_ms, enough=None):
        """Sends one query and gathers answers for `timeout_ms`, or until `enough(records)` is true."""
        qid = _random_id()
        self.sock.sendto(build_query(questions, qid), self.address)
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while True:
            left = remaining_ms(deadline)
            if left <= 0:
                return
            self.sock.settimeout(left / 1000)
            try:
                data, _ = self.sock.recvfrom(1500)
            except OSError:  # the timeout: MicroPython raises OSError(ETIMEDOUT), CPython TimeoutError
                return
            try:
                rid, flags, records = parse(data)
            except (ValueError, IndexError, UnicodeError):
                continue
            if rid != qid or not flags & 0x8000:  # not an answer to this query
                continue
            self.records += records
            if enough is not None and enough(self.records):
                return

    def close(self):
        self.sock.close()


def discover(service="_mqtt._tcp.local", timeout_ms=1500, tries=2, prefer=None):
    """The first instance of `service` on the local link, resolved to an address: a dict as `services` gives, or
    None. PTR first; SRV, TXT and A as asked when the responder did not add them (§12 lets it leave them out).
    `prefer` picks the instance or host whose first label matches it (a gateway name) when several answer."""
    q = Querier()
    try:
        service = service.lower().rstrip(".")

        def pick(found):
            if prefer:
                for s in found:
                    if _matches(s, prefer):
                        return s
            return found[0] if found else None

        def resolved(records):
            s = pick(services(records, service))
            return s is not None and s["address"] is not None and (prefer is None or _matches(s, prefer))

        for _ in range(tries):
            q.ask([(service, PTR)], timeout_ms, resolved)
            s = pick(services(q.records, service))
            if s is None:
                continue
            if s["host"] is None:
                name = s["instance"]
                q.ask([(name, SRV), (name, TXT)], timeout_ms, lambda r, name=name: _has(r, name, SRV))
                s = pick(services(q.records, service))
                if s is None or s["host"] is None:
                    continue
            if s["address"] is None:
                host = s["host"]
                q.ask([(host, A)], timeout_ms, lambda r, host=host: _has(r, host, A))
                s = pick(services(q.records, service))
            if s is not None and s["address"] is not None:
                return s
        return None
    finally:
        q.close()


def _matches(s, prefer):
    want = prefer.lower()
    return s["instance"].split(".")[0] == want or (s["host"] or "").split(".")[0] == want


def _has(records, name, rtype):
    return any(r[0] == name and r[1] == rtype and r[2] for r in records)


def resolve_local(hostname, port):
    """(address, port) of `<hostname>.local` through the firmware's resolver, or None. ESP32 and Pico W firmware
    answer `.local` names with an mDNS A query of their own (the ESP32 waits up to 5 s)."""
    import socket

    name = hostname if hostname.endswith(".local") else hostname + ".local"
    try:
        return socket.getaddrinfo(name, port)[0][-1]
    except (OSError, IndexError):
        return None
