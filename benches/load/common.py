"""What every target of the load benchmark shares: the payload, the clocks and the tallies.

Everything runs on one machine, so `time.monotonic_ns()` in the sender and in the receiver read
the same clock: the latency of a packet is the receiver's clock minus the timestamp the sender
wrote into the payload.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass, field

# TOC 0xF8: Opus config 31 (CELT fullband, 20 ms), one frame, so the native peer advances its
# RTP clock by 960 per packet. Then the 8-byte monotonic send time and padding to the size of a
# 64 kbit/s 20 ms Opus frame.
TOC = 0xF8
PAYLOAD_BYTES = 160
_HEADER = struct.Struct("!BQ")
_PADDING = bytes(PAYLOAD_BYTES - _HEADER.size)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def payload() -> bytes:
    """A fake Opus packet carrying the current monotonic time in ns."""
    return _HEADER.pack(TOC, time.monotonic_ns()) + _PADDING


def latency_ns(data: bytes, offset: int = 0) -> int:
    """Nanoseconds since the packet in `data[offset:]` was made by `payload()`."""
    _, sent = _HEADER.unpack_from(data, offset)
    return time.monotonic_ns() - int(sent)


@dataclass(frozen=True)
class Scenario:
    """Rooms of equal size, the first `speakers` members of each sending."""

    name: str
    rooms: int
    size: int
    speakers: int

    @property
    def participants(self) -> int:
        return self.rooms * self.size

    @property
    def streams(self) -> int:
        """Forwarded streams: each speaker to every other member of its room."""
        return self.rooms * self.speakers * (self.size - 1)


SCENARIOS = {
    "10x10": Scenario("10 rooms of 10, 2 speakers each", rooms=10, size=10, speakers=2),
    "1x50": Scenario("1 room of 50, 5 speakers", rooms=1, size=50, speakers=5),
}


def cpu_seconds(pid: int, thread_prefix: str | None = None) -> float:
    """CPU time (user + system) of a process, or of its threads whose name starts with a prefix."""
    if thread_prefix is None:
        return _stat_cpu(f"/proc/{pid}/stat")
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                if not comm.read().startswith(thread_prefix):
                    continue
            total += _stat_cpu(f"/proc/{pid}/task/{tid}/stat")
        except FileNotFoundError:
            continue
    return total


def _stat_cpu(path: str) -> float:
    with open(path) as stat:
        # Fields after the parenthesised name; utime and stime are the 14th and 15th overall.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


def udp_receive_drops() -> int:
    """Datagrams the kernel dropped, machine-wide, because a socket's receive buffer was full."""
    with open("/proc/net/snmp") as snmp:
        udp = [line.split() for line in snmp if line.startswith("Udp:")]
    return int(udp[1][udp[0].index("RcvbufErrors")])


def socket_drops(port: int) -> int:
    """Datagrams the kernel dropped at full receive buffers of the UDP sockets on a local port."""
    total = 0
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        with open(path) as table:
            next(table)  # header
            for line in table:
                fields = line.split()
                # local_address is HEX_IP:HEX_PORT; drops is the last column.
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    total += int(fields[-1])
    return total


def percentile(sorted_values: list[int], fraction: float) -> float:
    """The `fraction` quantile of sorted values (nearest rank); NaN for none."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return float(sorted_values[rank])


@dataclass
class Result:
    """One target under one scenario at one send rate."""

    target: str
    scenario: str
    rate: int  # packets per second per speaker
    seconds: float = 0.0
    forwarded: int = 0  # packets the target sent on (one per receiver)
    target_cpu: float = 0.0  # seconds of CPU the forwarding process/threads used
    generator_cpu: float = 0.0
    rss_per_participant: float = 0.0  # bytes
    latencies_ns: list[int] = field(default_factory=list)
    udp_drops: int = 0  # machine-wide receive-buffer drops during the phase
    target_drops: int | None = None  # of those, at the target's own socket (None: not known)
    note: str = ""

    @property
    def forwarded_pps(self) -> float:
        return self.forwarded / self.seconds if self.seconds else 0.0

    @property
    def pps_per_core(self) -> float:
        """Forwarded packets per second of CPU: what one saturated core would forward."""
        return self.forwarded / self.target_cpu if self.target_cpu else float("nan")

    @property
    def cpu_us_per_packet(self) -> float:
        return 1e6 * self.target_cpu / self.forwarded if self.forwarded else float("nan")

    def latency_ms(self, fraction: float) -> float:
        return percentile(sorted(self.latencies_ns), fraction) / 1e6

    def row(self) -> str:
        return (
            f"| {self.target} | {self.scenario} | {self.rate} | {self.forwarded_pps:,.0f} | "
            f"{self.target_cpu / self.seconds:.2f} | {self.pps_per_core:,.0f} | "
            f"{self.cpu_us_per_packet:.1f} | {self.latency_ms(0.5):.2f} | "
            f"{self.latency_ms(0.99):.2f} | {self.rss_per_participant / 1024:,.0f} | "
            f"{self.generator_cpu / self.seconds:.2f} | {self.udp_drops:,} | "
            f"{'n/a' if self.target_drops is None else f'{self.target_drops:,}'} | {self.note} |"
        )


HEADER = (
    "| target | scenario | pkt/s per speaker | forwarded pkt/s | target cores busy | "
    "forwarded pkt/s per core | CPU µs per forwarded pkt | latency p50 ms | latency p99 ms | "
    "RSS KiB per participant | generator cores busy | kernel UDP drops | of those at the target | "
    "note |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)
