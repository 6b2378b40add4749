"""The `voicechat-client` entry point: Kivy's environment, then the app on asyncio."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence


def configure_kivy(*, width: int = 1280, height: int = 800) -> None:
    """Set what Kivy reads at import time. Call before anything imports Kivy.

    Kivy parses `sys.argv` and writes logs and a config under `~/.kivy` unless told not to;
    the client has its own options and keeps Kivy's log in Python's logging.
    """
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    from kivy.config import Config

    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "minimum_width", "800")
    Config.set("graphics", "minimum_height", "560")
    # A chat window needs no more than 30 frames a second; the loop sleeps in between.
    Config.set("graphics", "maxfps", "30")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("kivy", "log_level", "warning")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The client's command line."""
    parser = argparse.ArgumentParser(
        prog="voicechat-client", description="The voicechat desktop client."
    )
    parser.add_argument("--server", help="server URL to preset on the login screen")
    parser.add_argument(
        "--home",
        help="directory for settings and tokens (default: the user config dir; "
        "VOICECHAT_CLIENT_HOME also sets it)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the client until its window closes."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.home:
        os.environ["VOICECHAT_CLIENT_HOME"] = args.home
    configure_kivy()
    from kivy_client.app import VoicechatApp

    app = VoicechatApp(server_url=args.server)
    asyncio.run(app.run_async())


if __name__ == "__main__":
    main()
