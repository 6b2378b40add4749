"""The SFU media plane (the Rust sfu_core crate).

Errors derive from `voicechat._native.SfuError`.
"""

from typing import final

__all__ = ["SfuConfig"]

@final
class SfuConfig:
    """Validated, immutable configuration of the SFU media plane.

    Every argument is keyword-only and optional; the defaults are those of the Rust
    `sfu_core::SfuConfig`. Instances compare equal when every field is equal, and are hashable.

    Args:
        bind_ip: Address the UDP media socket binds to.
        media_port: UDP port all peers are multiplexed on (VOICECHAT_MEDIA_PORT); 0 lets the
            OS pick a free one.
        public_ip: Address put in ICE candidates (VOICECHAT_PUBLIC_IP); None advertises
            `bind_ip`. Required when `bind_ip` is unspecified (0.0.0.0 or ::).
        worker_threads: Media I/O threads, 1 to 64.
        max_users_per_room: Most participants one room holds, 1 to 100.
        ice_timeout: Seconds a participant may go without ICE consent before it is dropped,
            1 to 300.

    Raises:
        SfuConfigError: A value outside its accepted range, or an address that does not parse.
        TypeError: A value of the wrong type, such as a str for `media_port`.
    """

    def __new__(
        cls,
        *,
        bind_ip: str = "127.0.0.1",
        media_port: int = 10000,
        public_ip: str | None = None,
        worker_threads: int = 1,
        max_users_per_room: int = 50,
        ice_timeout: float = 30.0,
    ) -> SfuConfig: ...
    @property
    def bind_ip(self) -> str:
        """Address the UDP media socket binds to."""
    @property
    def media_port(self) -> int:
        """UDP port all peers are multiplexed on; 0 means the OS picks one."""
    @property
    def public_ip(self) -> str | None:
        """Address configured for ICE candidates, or None to advertise `bind_ip`."""
    @property
    def advertised_ip(self) -> str:
        """Address put in ICE candidates: `public_ip` if set, else `bind_ip`."""
    @property
    def worker_threads(self) -> int:
        """Number of media I/O threads."""
    @property
    def max_users_per_room(self) -> int:
        """Most participants one room holds."""
    @property
    def ice_timeout(self) -> float:
        """Seconds a participant may go without ICE consent before it is dropped."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
