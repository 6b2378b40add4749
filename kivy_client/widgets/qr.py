"""QR codes as Kivy textures (segno builds the matrix; each module becomes a pixel, scaled
up with nearest-neighbour filtering so the code stays sharp)."""

from __future__ import annotations

import segno
from kivy.graphics.texture import Texture


def qr_texture(data: str, *, border: int = 4) -> Texture:
    """A black-on-white QR code for `data` (e.g. an `otpauth://` URI)."""
    code = segno.make(data, error="m", micro=False)
    rows = [list(row) for row in code.matrix_iter(scale=1, border=border)]
    size = len(rows)
    # Textures are filled bottom row first.
    # RGBA keeps every row 4-byte aligned, whatever the module count.
    dark, light = b"\x00\x00\x00\xff", b"\xff\xff\xff\xff"
    pixels = b"".join(dark if module else light for row in reversed(rows) for module in row)
    texture = Texture.create(size=(size, size), colorfmt="rgba")
    texture.blit_buffer(pixels, colorfmt="rgba", bufferfmt="ubyte")
    texture.mag_filter = "nearest"
    texture.min_filter = "nearest"
    return texture
