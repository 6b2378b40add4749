"""Two desktop clients' audio end to end: PulseAudio virtual sound cards, VoiceEngine, a live
server's SFU. Alice's microphone hears 1 kHz tone bursts; Bob's speaker must play them, Alice's
own speaker must not; muting Alice or deafening Bob silences Bob's speaker. The mouth-to-ear
latency of each burst is written to tests/artifacts/client_audio/end_to_end.json and the
median to a junit property (no timing is asserted; benches/test_client_audio.py compares it
with a reference)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from tests.client_audio.conftest import tone_power
from tests.client_audio.measure import mouth_to_ear, talk, voice_call, write_artifact
from tests.conftest import LiveServer
from tests.pulse import PulseAudio

pytestmark = pytest.mark.slow


async def test_tone_reaches_the_other_client_only(
    live_server: LiveServer, pulse_cards: PulseAudio, record_property: Callable[[str, object], None]
) -> None:
    link = pulse_cards.add_link("alice", "bob")
    async with voice_call(live_server.base_url, link, noise_suppression=False) as call:
        alice_speaker = pulse_cards.record(link.mouth.speaker_monitor)
        probe = await talk(pulse_cards, link, count=5)
        alice_heard = alice_speaker.stop()
        bob_stats = call.bob.stats()

        call.alice.muted = True
        muted = await talk(pulse_cards, link, count=2)
        call.alice.muted = False
        call.bob.deafened = True
        deafened = await talk(pulse_cards, link, count=2)
        call.bob.deafened = False
        again = await talk(pulse_cards, link, count=2)

    mic, bob_heard = probe[:, 0], probe[:, 1]
    assert tone_power(mic, 1000)[0] > 0.05, "the tone should reach Alice's microphone"
    rms, share = tone_power(bob_heard, 1000)
    assert rms > 0.02, rms
    assert share > 0.8, share
    assert tone_power(alice_heard, 1000)[0] < 1e-3, "Alice must not hear herself"
    assert bob_stats["packets_received"] > 50
    delays = mouth_to_ear(probe)
    assert len(delays) == 5, delays  # every burst arrived once
    assert tone_power(muted[:, 1], 1000)[0] < 1e-3, "muted Alice must not be heard"
    assert tone_power(deafened[:, 1], 1000)[0] < 1e-3, "deafened Bob must hear nothing"
    assert tone_power(again[:, 1], 1000)[0] > 0.02

    figures = {
        "mouth_to_ear_ms": [round(d * 1000, 1) for d in delays],
        "median_ms": round(float(np.median(delays)) * 1000, 1),
        "bob_stats": bob_stats,
    }
    path = write_artifact("end_to_end.json", figures)
    record_property("mouth_to_ear_median_ms", figures["median_ms"])
    record_property("figures", str(path))


async def test_devices_change_live(live_server: LiveServer, pulse_cards: PulseAudio) -> None:
    """Bob switches speakers mid-call: the tone moves to the new one."""
    link = pulse_cards.add_link("alice", "bob")
    spare = pulse_cards.add_card("spare")
    async with voice_call(live_server.base_url, link, noise_suppression=False) as call:
        call.bob.apply(replace(call.bob.config, output_device=spare.output_device))
        spare_heard = pulse_cards.record(spare.speaker_monitor)
        probe = await talk(pulse_cards, link, count=2)
        heard = spare_heard.stop()
    assert tone_power(heard, 1000)[0] > 0.02
    assert tone_power(probe[:, 1], 1000)[0] < 1e-3
