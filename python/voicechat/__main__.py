"""`python -m voicechat` is the `voicechat` command."""

from voicechat.cli import main

main()
