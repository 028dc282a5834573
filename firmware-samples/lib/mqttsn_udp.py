# MQTT-SN over UDP: the transport for mqttsn.Client, and gateway discovery (§6.1) by SEARCHGW / GWINFO or by
# listening for ADVERTISE.
import mqttsn
from clock import remaining_ms, sleep_ms, ticks_add, ticks_ms


def _socket():
    import socket

    return socket


def address(host, port):
    return _socket().getaddrinfo(host, port)[0][-1]


def _same(a, b):
    return a[0] == b[0] and a[1] == b[1]


class UdpTransport:
    """One UDP socket. A sleeping client must come back from the same address and port: the gateway knows its
    sleepers by address, so `local_port` should be fixed for the sleeping cycle (0: any, for one-shot use)."""

    def __init__(self, gateway=None, local_port=0):
        socket = _socket()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if local_port:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            except (OSError, AttributeError):
                pass
        self.sock.bind(address("0.0.0.0", local_port))
        self.gateway = gateway

    def send(self, data):
        self.sock.sendto(data, self.gateway)

    def receive_from(self, timeout_ms):
        """(data, sender) of the next datagram, or None after `timeout_ms`."""
        if timeout_ms <= 0:
            return None
        self.sock.settimeout(timeout_ms / 1000)
        try:
            return self.sock.recvfrom(1500)
        except OSError:  # the timeout
            return None

    def receive(self, timeout_ms):
        """The next datagram from the gateway; datagrams from anyone else are dropped."""
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while True:
            got = self.receive_from(remaining_ms(deadline))
            if got is None:
                return None
            if self.gateway is None or _same(got[1], self.gateway):
                return got[0]

    def close(self):
        self.sock.close()


def search(transport, group="225.1.1.1", port=1883, radius=1, timeout_ms=5000, tries=3, delay_ms=0):
    """SEARCHGW to the discovery group (§6.1), tries times, T_SEARCHGW (timeout_ms) apart; the first GWINFO, or
    ADVERTISE, names the gateway: (gw_id, gateway address) or None. A gateway that answers for itself sends no
    GwAdd: it is the datagram's sender. `delay_ms` is the random wait before the first SEARCHGW that §6.1 asks
    of many nodes powered on at once."""
    if delay_ms:
        sleep_ms(_jitter(delay_ms))
    group_address = address(group, port)
    for _ in range(tries):
        transport.sock.sendto(mqttsn.searchgw(radius), group_address)
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while True:
            got = transport.receive_from(remaining_ms(deadline))
            if got is None:
                break
            try:
                msg_type, f = mqttsn.decode(got[0])
            except (ValueError, IndexError, UnicodeError):
                continue
            if msg_type in (mqttsn.GWINFO, mqttsn.ADVERTISE):
                return f["gw_id"], gateway_address(f, got[1])
    return None


def gateway_address(fields, sender):
    """The gateway named by GWINFO: GwAdd when another client answered for it (an IPv4 address and port, six
    octets, is understood here), else the sender."""
    add = fields.get("gw_add") or b""
    if len(add) == 6:
        return address("%d.%d.%d.%d" % tuple(add[:4]), add[4] << 8 | add[5])
    return sender


def wait_advertise(group="225.1.1.1", port=1883, timeout_ms=60000):
    """Joins the discovery group and waits for an ADVERTISE (or a GWINFO sent to the group): (gw_id, address,
    duration or None) or None. Gateways advertise every T_ADV (15 minutes or more), so this suits a node that is
    powered anyway, not a battery node's short wake."""
    socket = _socket()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        except (OSError, AttributeError):
            pass
        sock.bind(address("0.0.0.0", port))
        group_bytes = bytes(int(x) for x in group.split("."))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group_bytes + b"\x00\x00\x00\x00")
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while True:
            left = remaining_ms(deadline)
            if left <= 0:
                return None
            sock.settimeout(left / 1000)
            try:
                data, sender = sock.recvfrom(1500)
            except OSError:
                return None
            try:
                msg_type, f = mqttsn.decode(data)
            except (ValueError, IndexError, UnicodeError):
                continue
            if msg_type == mqttsn.ADVERTISE:
                return f["gw_id"], sender, f["duration"]
            if msg_type == mqttsn.GWINFO:
                return f["gw_id"], gateway_address(f, sender), None
    finally:
        sock.close()


def _jitter(limit_ms):
    try:
        import random

        return random.getrandbits(16) % (limit_ms + 1)
    except (ImportError, AttributeError):
        return ticks_ms() % (limit_ms + 1)
