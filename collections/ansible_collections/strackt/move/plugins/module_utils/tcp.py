# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is connected to, and what listens on, a local TCP port: the kernel's socket diagnostics
(netlink, /proc/net/tcp when that is not there) and a connect probe. The freeze uses them to
drain an app before stopping it and to see its forwarder listen. Stdlib only.
"""

from __future__ import annotations

import os
import socket
import struct
import time

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
ESTABLISHED = "01"  # the st column of /proc/net/tcp

# netlink sock_diag (linux/sock_diag.h, linux/inet_diag.h): a dump of the TCP sockets in a set
# of states. The kernel filters by state, so an app behind a proxy without keep-alive, with
# thousands of TIME_WAIT sockets, answers in well under a millisecond where reading and parsing
# /proc/net/tcp (every socket, as text) took 0.15 s on a busy server: the drain polls it.
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_ESTABLISHED = 1
_NLMSGHDR = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then an inet_diag_sockid (48 bytes) left 0
_REQ = struct.Struct("=BBBxI48x")
# inet_diag_msg: family, state, timer, retrans, then the sockid: sport and dport (big-endian) ...
_MSG_HEAD = struct.Struct("=BBBB2H")


def diag_request(family: int, states: int, seq: int = 1) -> bytes:
    """A SOCK_DIAG_BY_FAMILY dump request for the TCP sockets of ``family`` in ``states`` (a bit
    mask: 1 << state)."""
    body = _REQ.pack(family, socket.IPPROTO_TCP, 0, states)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def count_in_diag(data: bytes, port: int) -> tuple[int, bool]:
    """(sockets whose local port is ``port``, the dump ended) in one netlink answer ``data`` (a
    series of inet_diag_msg messages). An error message is an OSError."""
    count, pos = 0, 0
    while pos + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < _NLMSGHDR.size:
            raise OSError("malformed netlink message (length %d)" % length)
        if kind == NLMSG_DONE:
            return count, True
        if kind == NLMSG_ERROR:
            errno = -struct.unpack_from("=i", data, pos + _NLMSGHDR.size)[0]
            raise OSError(errno, "sock_diag: %s" % os.strerror(errno))
        if kind == SOCK_DIAG_BY_FAMILY and length >= _NLMSGHDR.size + _MSG_HEAD.size:
            sport = _MSG_HEAD.unpack_from(data, pos + _NLMSGHDR.size)[4]
            if socket.ntohs(sport) == port:
                count += 1
        pos += (length + 3) & ~3  # NLMSG_ALIGN
    return count, False


def diag_count(port: int, states: int = 1 << TCP_ESTABLISHED) -> int:
    """TCP sockets (IPv4 and IPv6) with local ``port`` in ``states``, from the kernel's sock_diag.
    OSError when netlink is not there (or refuses)."""
    count = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(2.0)
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
            sock.send(diag_request(family, states, seq))
            done = False
            while not done:
                found, done = count_in_diag(sock.recv(65536), port)
                count += found
    return count


def count_in_table(text: str, port: int, state: str = ESTABLISHED) -> int:
    """Connections in ``state`` whose local port is ``port``, in one /proc/net/tcp table's text
    (a header line, then ``sl local_address rem_address st ...`` with hex ``ADDR:PORT``)."""
    want = "%04X" % port
    count = 0
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[1].rsplit(":", 1)[-1].upper() == want and fields[3] == state:
            count += 1
    return count


def established(port: int, tables: tuple[str, ...] = TABLES) -> int:
    """TCP connections to local ``port`` in ESTABLISHED state (answered, in flight or queued)."""
    try:
        return diag_count(port)
    except OSError:
        pass  # no sock_diag here (an old kernel, a sandbox): the tables say the same, slower
    return established_in_tables(port, tables)


def established_in_tables(port: int, tables: tuple[str, ...] = TABLES) -> int:
    """``established`` from the /proc/net/tcp tables."""
    count = 0
    for table in tables:
        try:
            with open(table) as handle:
                count += count_in_table(handle.read(), port)
        except OSError:
            continue  # no IPv6 here
    return count


def wait_listening(port: int, timeout: float = 5.0, host: str = "127.0.0.1") -> bool:
    """True as soon as something accepts a connection on ``host:port``; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
