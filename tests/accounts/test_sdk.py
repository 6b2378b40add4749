"""The SDK's account methods against the app served on a loopback port."""

from __future__ import annotations

import pytest

from tests.accounts.conftest import SmtpServer, token_of
from tests.gateway.conftest import serve_app
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import AuthError
from voicechat.sdk.client import Client
from voicechat.settings import Settings


async def test_sdk_account_methods(settings: Settings, smtp: SmtpServer) -> None:
    async with serve_app(settings) as served, Client(served.base_url) as sdk:
        await sdk.register("admin", DEFAULT_PASSWORD)
        await sdk.register("erin", DEFAULT_PASSWORD, email="erin@example.org")
        await sdk.change_password(DEFAULT_PASSWORD, "second password")
        await sdk.set_email("erin@example.org")
        (verify,) = await smtp.mailbox.wait_for("erin@example.org")
        await sdk.verify_email(token_of(verify))
        assert (await sdk.me()).email_verified is True
        await sdk.forgot_password(username="erin")
        mails = await smtp.mailbox.wait_for("erin@example.org", count=2)
        await sdk.reset_password(token_of(mails[1]), "third password")
        await sdk.login("erin", "third password")
        archive = await sdk.export()
        assert archive["profile"]["username"] == "erin"
        await sdk.delete_account(password="third password")
        with pytest.raises(AuthError) as refused:
            await sdk.login("erin", "third password")
        assert refused.value.code == "account_deleted"
