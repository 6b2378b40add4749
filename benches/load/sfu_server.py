"""Our SFU in a process of its own, controlled over stdin/stdout with one JSON object a line.

Requests `{"op": ..., ...}` get `{"ok": result}` or `{"error": message}`. The media thread
(`voicechat-sfu-0`) is what the benchmark charges; this control loop idles during measurement.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from voicechat._native.sfu import Sfu, SfuConfig


def handle(sfu: Sfu, request: dict[str, Any]) -> object:
    op = request["op"]
    if op == "create_room":
        sfu.create_room(request["room"], user_limit=request.get("limit"))
        return None
    if op == "join":
        return sfu.join(request["room"], request["participant"], request["sdp"])
    if op == "pending_offer":
        return sfu.pending_offer(request["participant"])
    if op == "accept_answer":
        sfu.accept_answer(request["participant"], request["sdp"])
        return None
    if op == "forwarded":
        return sum(sfu.stats(p).packets_out for p in request["participants"])
    if op == "connected":
        return all(sfu.stats(p).connected for p in request["participants"])
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    config = SfuConfig(media_port=0, max_users_per_room=100, ice_timeout=60.0)
    with Sfu(config) as sfu:
        print(json.dumps({"ok": list(sfu.local_addr)}), flush=True)
        for line in sys.stdin:
            try:
                reply: dict[str, object] = {"ok": handle(sfu, json.loads(line))}
            except Exception as error:  # every failure goes back to the generator
                reply = {"error": f"{type(error).__name__}: {error}"}
            print(json.dumps(reply), flush=True)
            # Drain queued events so the bounded event channel never counts overflow.
            sfu.poll_events(0.0)


if __name__ == "__main__":
    main()
