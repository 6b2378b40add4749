"""The voicechat desktop client: Kivy screens over `voicechat.sdk.app.AppSession`.

All protocol, audio and state logic lives in the SDK (`voicechat.sdk.app`,
`voicechat.sdk.audio`); this package only draws that state and forwards what the user does.
Importing it does not import Kivy: `kivy_client.main.main` sets Kivy's environment first.
"""

from pathlib import Path

KV_DIR = Path(__file__).resolve().parent / "kv"

__all__ = ["KV_DIR"]
