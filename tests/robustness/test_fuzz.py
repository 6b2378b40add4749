"""Schemathesis over the whole OpenAPI document of a live `voicechat serve` (SPEC §11).

Every check but `positive_data_acceptance` (tests/robustness/fuzzing.py says why), as the
administrator, as an ordinary member and without credentials, a bounded number of cases per
operation so the run stays within CI's budget. Asserts what a client would see: no 5xx, and
every answer's status, headers, media type and body as the document says. `scripts/fuzz.sh`
runs the same, longer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.robustness.fuzzing import ROLE_CHANGES, fuzz, register_admin

# Cases per operation and phase; with four phases and three passes ≈ 6,000 requests.
MAX_EXAMPLES = 10
# A fixed seed: CI sees the same cases each run (scripts/fuzz.sh varies them).
SEED = 13


@pytest.fixture
def live_server(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> LiveServer:
    """A live server with SMTP configured: mail is queued for a server that is not there
    (port 9 refuses), so the account routes answer as on a server that sends mail; what an
    SMTP outage does is tests/accounts' job."""
    return live_server_factory(
        {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "live-data"),
            "VOICECHAT_SMTP_URL": "smtp://127.0.0.1:9",
        }
    )


@pytest.mark.timeout(300)
def test_the_whole_api_answers_as_documented(live_server: LiveServer) -> None:
    admin = register_admin(live_server.base_url)
    member = register_admin(live_server.base_url, "fuzz-member")
    passes = [
        # The role changes last: they can take the administrator's own power away.
        ("administrator", admin, None, ROLE_CHANGES),
        ("administrator (role changes)", admin, ROLE_CHANGES, None),
        ("member", member, None, None),
        ("anonymous", None, None, None),
    ]
    for who, credentials, only, without in passes:
        totals = fuzz(
            live_server.base_url,
            token=credentials,
            max_examples=MAX_EXAMPLES,
            seed=SEED,
            # The stateful phase can judge a valid upload negative once a link has replaced its
            # invalid value (schemathesis#2983); scripts/fuzz.sh runs it and reports what it finds.
            phases=("examples", "coverage", "fuzzing"),
            path_regex=only,
            exclude_regex=without,
        )
        report = "\n\n".join(totals.examples + totals.errors)
        assert totals.cases > (100 if "role changes" in who else 1000), f"{who}: {totals.summary()}"
        assert totals.server_errors == 0, f"{who}: {totals.summary()}\n{report}"
        assert not totals.failures, f"{who}: {totals.summary()}\n{report}"
        assert not totals.errors, f"{who}: {totals.summary()}\n{report}"
    assert "Traceback" not in live_server.log
