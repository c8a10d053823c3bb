"""Bytes a TCP connection put on the link, from the kernel's own counters where it has them.

Linux's `TCP_INFO` (struct tcp_info, `linux/tcp.h`) counts the payload each way, the
retransmitted payload and every segment, pure ACKs and handshakes included. The link also
carries each segment's headers: IPv4 20 + TCP 20 + the timestamp option 12 bytes, and on
Ethernet a 14-byte frame header (what `ip -s link` counts). After a loss, ACKs also carry SACK
blocks (up to 28 bytes more) until the hole is filled: the receiver sends one for every packet
that arrives out of order (`tcpi_rcv_ooopack`), the sender receives them for about a window
of packets (`tcpi_snd_cwnd`) after each segment it had to retransmit. Elsewhere the payload is
all the program knows: the link bytes are estimated from it with the same per-segment
overhead, one full segment per MSS of payload and an ACK for every two segments the other way.
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass
from typing import Final

#: IPv4 + TCP + timestamps, plus the Ethernet header: what one segment adds on the wire.
SEGMENT_OVERHEAD: Final = 20 + 20 + 12 + 14
#: A reset (IPv4 + TCP + Ethernet), the answer to each segment reaching a closed connection.
RESET_BYTES: Final = 20 + 20 + 14
#: A typical MSS with timestamps on a 1500-byte MTU link (for the estimate only).
MSS: Final = 1448
_TCP_INFO: Final[int | None] = getattr(socket, "TCP_INFO", 11 if sys.platform == "linux" else None)
# struct tcp_info field offsets (stable kernel ABI; newer fields are appended)
_RCV_RTT: Final = 92  # u32, microseconds: the receiver's round-trip estimate, queues included
_SND_CWND: Final = 80  # u32, segments
_TOTAL_RETRANS: Final = 100  # u32
_BYTES_ACKED: Final = 120  # u64, since 4.1
_BYTES_RECEIVED: Final = 128  # u64, since 4.1
_SEGS_OUT: Final = 136  # u32, since 4.2
_SEGS_IN: Final = 140  # u32
_DATA_SEGS_IN: Final = 152  # u32, since 4.6; then data segments out
_BYTES_SENT: Final = 200  # u64, since 4.19: payload sent, retransmissions included
_BYTES_RETRANS: Final = 208  # u64, since 4.19
_RCV_OOOPACK: Final = 224  # u32, since 5.4
_WANT: Final = 232
#: SACK blocks an ACK carries while a hole is open: two or three blocks of 8 bytes and padding.
SACK_BYTES: Final = 24


@dataclass(frozen=True, slots=True)
class TcpCounters:
    """One connection's counters: payload each way (sent includes retransmissions), segments."""

    bytes_acked: int
    bytes_received: int
    bytes_sent: int
    bytes_retrans: int
    segs_out: int
    segs_in: int
    rcv_rtt_us: int = 0
    sack_acks: int = 0  # ACKs either way estimated to carry SACK blocks

    def link_bytes(self) -> int:
        """Bytes this connection put on the link both ways, headers and framing included."""
        payload = self.bytes_sent + self.bytes_received
        headers = (self.segs_out + self.segs_in) * SEGMENT_OVERHEAD
        return payload + headers + self.sack_acks * SACK_BYTES


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
    (rcv_rtt,) = struct.unpack_from("I", raw, _RCV_RTT)
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
    sack_acks = 0
    if len(raw) >= _RCV_OOOPACK + 4:
        data_in, data_out = struct.unpack_from("II", raw, _DATA_SEGS_IN)
        (cwnd,) = struct.unpack_from("I", raw, _SND_CWND)
        (ooo,) = struct.unpack_from("I", raw, _RCV_OOOPACK)
        sack_acks = min(segs_out - data_out, ooo) + min(segs_in - data_in, retrans_segs * cwnd)
    return TcpCounters(
        acked, received, sent, retrans, segs_out, segs_in, rcv_rtt, max(0, sack_acks)
    )


def estimate_link_bytes(sent: int, received: int, connections: int = 1) -> int:
    """Link bytes for payloads counted by the program alone (no kernel counters)."""
    segments = 0
    for payload in (sent, received):
        data = -(-payload // MSS)
        segments += data + data // 2  # the data segments, and the other side's ACKs
    handshakes = connections * 7  # SYN, SYN-ACK, ACK and the FIN exchange
    return sent + received + (segments + handshakes) * SEGMENT_OVERHEAD
