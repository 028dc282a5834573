"""Zero-configuration discovery: the gateway advertises itself over mDNS / DNS-SD (RFC 6762, 6763), so that IP
sensors and browsers find it as <name>.local and by service type. app.py owns it (start, stop, status).

    names.py      the host name: its default, and the next one after a conflict
    addresses.py  where the listeners are reachable (interfaces, addresses), and when that changes
    services.py   the service types and TXT records a sensor sees
    mdns.py       the advertiser: AsyncZeroconf on the gateway's event loop, renaming on conflicts

MQTT-SN's own discovery (ADVERTISE, SEARCHGW, GWINFO) lives with the MQTT-SN gateway; docs/discovery.md
describes both.
"""
