"""Bytes a TCP connection put on the link, from the kernel's own counters where it has them.

Linux's `TCP_INFO` (struct tcp_info, `linux/tcp.h`) counts the payload each way, the
retransmitted payload and every segment, pure ACKs and handshakes included. The link also
carries each segment's headers: IPv4 20 + TCP 20 + the timestamp option 12 bytes, and on
Ethernet a 14-byte frame header (what `ip -s link` counts). Elsewhere the payload is all the
program knows: the link bytes are estimated from it with the same per-segment overhead, one
full segment per MSS of payload and an ACK for every two segments the other way.
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass
from typing import Final

#: IPv4 + TCP + timestamps, plus the Ethernet header: what one segment adds on the wire.
SEGMENT_OVERHEAD: Final = 20 + 20 + 12 + 14
#: A typical MSS with timestamps on a 1500-byte MTU link (for the estimate only).
MSS: Final = 1448
_TCP_INFO: Final[int | None] = getattr(socket, "TCP_INFO", 11 if sys.platform == "linux" else None)
# struct tcp_info field offsets (stable kernel ABI; newer fields are appended)
_TOTAL_RETRANS: Final = 100  # u32
_BYTES_ACKED: Final = 120  # u64, since 4.1
_BYTES_RECEIVED: Final = 128  # u64, since 4.1
_SEGS_OUT: Final = 136  # u32, since 4.2
_SEGS_IN: Final = 140  # u32
_BYTES_SENT: Final = 200  # u64, since 4.19: payload sent, retransmissions included
_BYTES_RETRANS: Final = 208  # u64, since 4.19
_WANT: Final = 232


@dataclass(frozen=True, slots=True)
class TcpCounters:
    """One connection's counters: payload each way (sent includes retransmissions), segments."""

    bytes_acked: int
    bytes_received: int
    bytes_sent: int
    bytes_retrans: int
    segs_out: int
    segs_in: int

    def link_bytes(self) -> int:
        """Bytes this connection put on the link both ways, headers and framing included."""
        payload = self.bytes_sent + self.bytes_received
        return payload + (self.segs_out + self.segs_in) * SEGMENT_OVERHEAD


def read(sock: socket.socket) -> TcpCounters | None:
    """The connection's kernel counters, or None where the OS does not give them."""
    if _TCP_INFO is None or sys.platform != "linux":
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _WANT)
    except (OSError, ValueError):
        return None
    if len(raw) < _SEGS_IN + 4:
        return None
    (retrans_segs,) = struct.unpack_from("I", raw, _TOTAL_RETRANS)
    acked, received = struct.unpack_from("QQ", raw, _BYTES_ACKED)
    # both count the SYN's one sequence number once the handshake is done
    acked, received = max(0, acked - 1), max(0, received - 1)
    segs_out, segs_in = struct.unpack_from("II", raw, _SEGS_OUT)
    if len(raw) >= _BYTES_RETRANS + 8:
        sent, retrans = struct.unpack_from("QQ", raw, _BYTES_SENT)
    else:  # kernels before 4.19: acked payload plus the retransmitted segments, full-sized
        retrans = retrans_segs * MSS
        sent = acked + retrans
    return TcpCounters(acked, received, sent, retrans, segs_out, segs_in)


def estimate_link_bytes(sent: int, received: int, connections: int = 1) -> int:
    """Link bytes for payloads counted by the program alone (no kernel counters)."""
    segments = 0
    for payload in (sent, received):
        data = -(-payload // MSS)
        segments += data + data // 2  # the data segments, and the other side's ACKs
    handshakes = connections * 7  # SYN, SYN-ACK, ACK and the FIN exchange
    return sent + received + (segments + handshakes) * SEGMENT_OVERHEAD
