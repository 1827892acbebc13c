"""Ask one DNS server for the A record of a name over UDP; print NOERROR/NXDOMAIN/... and the addresses.

    python3 dnsq.py SERVER NAME      (stdlib only; used by check-isolation.sh from the host)
"""

import random
import socket
import struct
import sys
import time

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def query(server: str, name: str, timeout: float = 2.0) -> str:
    qid = random.randrange(1 << 16)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    t0 = time.monotonic()
    s.sendto(q, (server, 53))
    data = s.recv(4096)
    ms = (time.monotonic() - t0) * 1000
    rid, flags, _qd, an, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    assert rid == qid, "wrong id"
    rcode = RCODES.get(flags & 0xF, str(flags & 0xF))
    # skip the question, then read A records
    i = 12
    while data[i]:
        i += data[i] + 1
    i += 5
    addrs = []
    for _ in range(an):
        if data[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while data[i]:
                i += data[i] + 1
            i += 1
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[i : i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(data[i : i + 4]))
        i += rdlen
    return f"{rcode} {' '.join(addrs)} ({ms:.1f} ms)".replace("  ", " ")


if __name__ == "__main__":
    try:
        print(query(sys.argv[1], sys.argv[2]))
    except OSError as e:
        print(f"ERROR {e}")
        sys.exit(1)
