"""The sandbox: a simulated social network used by the demo and the tests, deterministic per channel."""

from __future__ import annotations

from workers.connectors.base import ChannelRef, CheckResult, ConnectorError, FailureKind, Health


class SandboxConnector:
    """Accepts any credentials except the ones that say they are expired or revoked."""

    name = "sandbox"

    def check(self, channel: ChannelRef) -> CheckResult:
        creds = channel.credentials
        if creds.get("unreachable"):
            raise ConnectorError(FailureKind.NETWORK, "the sandbox network is unreachable")
        if creds.get("revoked"):
            return CheckResult(Health.REVOKED, "the sandbox says: access revoked by the account owner")
        if creds.get("expired"):
            return CheckResult(Health.EXPIRED, "the sandbox says: token expired")
        return CheckResult(Health.OK, f"sandbox account {channel.handle} reachable")


def connectors() -> dict[str, SandboxConnector]:
    """Connectors by name. Only the sandbox exists so far; the real ones come with publishing."""
    return {"sandbox": SandboxConnector()}
