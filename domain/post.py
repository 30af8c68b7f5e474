"""A post: one message to one or more channels, through the approval chain its tenant's policy requires."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id
from domain.errors import Conflict, InvalidInput, InvalidTransition, SelfApproval
from domain.tenant import ApprovalPolicy


class PostStatus(str, Enum):
    DRAFT = "DRAFT"
    IN_REVIEW = "IN_REVIEW"
    CHANGES_REQUESTED = "CHANGES_REQUESTED"
    AWAITING_CLIENT = "AWAITING_CLIENT"
    APPROVED = "APPROVED"
    SCHEDULED = "SCHEDULED"
    PUBLISHING = "PUBLISHING"
    PUBLISHED = "PUBLISHED"
    FAILED = "FAILED"
    HELD = "HELD"
    CANCELLED = "CANCELLED"


class Temperature(str, Enum):
    HOT = "HOT"
    COLD = "COLD"


INTERNAL, CLIENT = "internal", "client"
_URL = re.compile(r"^https?://\S{1,2000}$")
S = PostStatus


@dataclass(frozen=True)
class Variant:
    """The text of a post on one channel."""

    channel_id: str
    body: str
    media_urls: tuple[str, ...] = ()

    @staticmethod
    def checked(variants: list[Variant]) -> list[dict[str, Any]]:
        if not variants:
            raise InvalidInput("a post needs at least one variant", "variants")
        if len(variants) > 20:
            raise InvalidInput("at most 20 variants", "variants")
        seen = set()
        out = []
        for i, v in enumerate(variants):
            if v.channel_id in seen:
                raise InvalidInput("one variant per channel", f"variants.{i}.channelId")
            seen.add(v.channel_id)
            if not v.body.strip() or len(v.body) > 10_000:
                raise InvalidInput("body must have 1 to 10,000 characters", f"variants.{i}.body")
            if len(v.media_urls) > 10 or any(not _URL.match(u) for u in v.media_urls):
                raise InvalidInput("mediaUrls: at most 10 http(s) URLs", f"variants.{i}.mediaUrls")
            out.append({"channel_id": v.channel_id, "body": v.body, "media_urls": list(v.media_urls)})
        return out


class Post(ParvisAggregate):
    """The lifecycle: DRAFT → IN_REVIEW → (CHANGES_REQUESTED → DRAFT) → AWAITING_CLIENT → APPROVED → SCHEDULED
    → PUBLISHING → PUBLISHED | FAILED, plus HELD (crisis) and CANCELLED."""

    @staticmethod
    def create_id(tenant_key: str) -> str:
        return aggregate_id(tenant_key, "post")

    class Drafted(ParvisAggregate.Created):
        tenant_key: str
        author_id: str
        variants: list[dict[str, Any]]
        campaign_id: str | None
        objective_id: str | None
        persona_id: str | None
        temperature: str

    @event(Drafted)
    def __init__(
        self, tenant_key: str, author_id: str, variants: list[dict[str, Any]], campaign_id: str | None,
        objective_id: str | None, persona_id: str | None, temperature: str,
    ) -> None:
        self.tenant_key = tenant_key
        self.author_id = author_id
        self.variants = variants
        self.campaign_id = campaign_id
        self.objective_id = objective_id
        self.persona_id = persona_id
        self.temperature = temperature
        self.status = S.DRAFT.value
        self.policy: dict[str, Any] | None = None
        self.submission = 0
        self.approvals: list[dict[str, Any]] = []
        self.scheduled_at: datetime | None = None
        self.published: dict[str, dict[str, Any]] = {}
        self.hold_reason: str | None = None

    # ------------------------------------------------------------------ checks
    def check_status(self, *allowed: PostStatus, action: str) -> None:
        if self.status not in {a.value for a in allowed}:
            raise InvalidTransition(f"a {self.status} post cannot be {action}", "postId")

    def check_channel(self, channel_id: str) -> None:
        if channel_id not in {v["channel_id"] for v in self.variants}:
            raise InvalidInput("the post has no variant for this channel", "channelId")

    def check_version(self, expected: int | None) -> None:
        if expected is not None and expected != self.version:
            raise Conflict(f"the post is at version {self.version}, not {expected}: reload it", "expectedVersion")

    @property
    def cold(self) -> bool:
        return self.temperature == Temperature.COLD.value

    def internal_approvers(self) -> set[str]:
        return {a["by"] for a in self.approvals if a["step"] == INTERNAL and a["approved"]}

    # ------------------------------------------------------------------ drafting and review
    def edit(self, variants: list[dict[str, Any]], expected_version: int | None) -> None:
        self.check_version(expected_version)
        self.check_status(S.DRAFT, S.CHANGES_REQUESTED, action="edited")
        self._edited(variants=variants)

    @event("Edited")
    def _edited(self, variants: list[dict[str, Any]]) -> None:
        self.variants = variants
        self.status = S.DRAFT.value

    def submit(self, policy: ApprovalPolicy, policy_version: int) -> None:
        self.check_status(S.DRAFT, action="submitted")
        if policy.internal_approvals > 0:
            nxt = S.IN_REVIEW
        elif policy.client_approval:
            nxt = S.AWAITING_CLIENT
        else:
            nxt = S.APPROVED  # the policy in force requires no approval at all
        self._submitted(policy=policy.as_dict(), policy_version=policy_version, status=nxt.value,
                        submission=self.submission + 1)

    @event("Submitted")
    def _submitted(self, policy: dict[str, Any], policy_version: int, status: str, submission: int) -> None:
        self.policy = {**policy, "version": policy_version}
        self.status = status
        self.submission = submission
        self.approvals = []

    def step(self) -> str:
        """Which approval the post waits for."""
        self.check_status(S.IN_REVIEW, S.AWAITING_CLIENT, action="reviewed")
        return INTERNAL if self.status == S.IN_REVIEW.value else CLIENT

    def approve(self, user_id: str, comment: str | None) -> None:
        step = self.step()
        assert self.policy is not None
        if step == INTERNAL:
            if user_id == self.author_id:
                raise SelfApproval("nobody approves their own post", "postId")
            if user_id in self.internal_approvers():
                raise InvalidTransition("you already approved this post; another person must", "postId")
            count = len(self.internal_approvers()) + 1
            if count < self.policy["internal_approvals"]:
                nxt = S.IN_REVIEW
            else:
                nxt = S.AWAITING_CLIENT if self.policy["client_approval"] else S.APPROVED
        else:
            if user_id == self.author_id:
                raise SelfApproval("nobody approves their own post", "postId")
            nxt = S.APPROVED
        self._approved(by=user_id, step=step, comment=comment, status=nxt.value)

    @event("Approved")
    def _approved(self, by: str, step: str, comment: str | None, status: str) -> None:
        self.approvals = [*self.approvals, {"by": by, "step": step, "approved": True, "comment": comment}]
        self.status = status

    def request_changes(self, user_id: str, comment: str | None) -> None:
        step = self.step()
        self._changes_requested(by=user_id, step=step, comment=comment)

    @event("ChangesRequested")
    def _changes_requested(self, by: str, step: str, comment: str | None) -> None:
        self.approvals = [*self.approvals, {"by": by, "step": step, "approved": False, "comment": comment}]
        self.status = S.CHANGES_REQUESTED.value

    def reject(self, user_id: str, comment: str | None) -> None:
        step = self.step()
        self._rejected(by=user_id, step=step, comment=comment)

    @event("Rejected")
    def _rejected(self, by: str, step: str, comment: str | None) -> None:
        self.approvals = [*self.approvals, {"by": by, "step": step, "approved": False, "comment": comment}]
        self.status = S.CANCELLED.value

    def expire_approval(self, submission: int) -> bool:
        """A pending approval of that submission lapses: the post goes back to DRAFT."""
        if submission != self.submission or self.status not in (S.IN_REVIEW.value, S.AWAITING_CLIENT.value):
            return False
        self._approval_expired(submission=submission)
        return True

    @event("ApprovalExpired")
    def _approval_expired(self, submission: int) -> None:
        self.status = S.DRAFT.value
        self.approvals = []

    # ------------------------------------------------------------------ scheduling and crisis
    def schedule(self, at: datetime, now: datetime) -> None:
        self.check_status(S.APPROVED, S.SCHEDULED, action="scheduled")
        if at <= now:
            raise InvalidInput("the time must be in the future", "at")
        self._scheduled(at=at)

    @event("Scheduled")
    def _scheduled(self, at: datetime) -> None:
        self.scheduled_at = at
        self.status = S.SCHEDULED.value

    def hold(self, reason: str) -> bool:
        """Crisis: a scheduled COLD post waits; HOT posts keep going out."""
        if self.status != S.SCHEDULED.value or not self.cold:
            return False
        self._held(reason=reason)
        return True

    @event("Held")
    def _held(self, reason: str) -> None:
        self.status = S.HELD.value
        self.hold_reason = reason

    def release(self, now: datetime) -> bool:
        if self.status != S.HELD.value:
            return False
        future = self.scheduled_at is not None and self.scheduled_at > now
        self._released(status=(S.SCHEDULED if future else S.APPROVED).value)
        return True

    @event("Released")
    def _released(self, status: str) -> None:
        self.status = status
        self.hold_reason = None
        if status == S.APPROVED.value:
            self.scheduled_at = None

    def cancel(self) -> None:
        if self.status in (S.PUBLISHED.value, S.PUBLISHING.value, S.CANCELLED.value):
            raise InvalidTransition(f"a {self.status} post cannot be cancelled", "postId")
        self._cancelled()

    @event("Cancelled")
    def _cancelled(self) -> None:
        self.status = S.CANCELLED.value

    # ------------------------------------------------------------------ publishing
    def start_publishing(self) -> None:
        self.check_status(S.SCHEDULED, action="published now")
        self._publishing_started()

    @event("PublishingStarted")
    def _publishing_started(self) -> None:
        self.status = S.PUBLISHING.value

    def record_published(self, channel_id: str, external_id: str, url: str | None, at: datetime) -> None:
        self.check_status(S.PUBLISHING, action="marked published")
        self.check_channel(channel_id)
        if channel_id in self.published:
            return
        self._variant_published(channel_id=channel_id, external_id=external_id, url=url, at=at)
        if all(v["channel_id"] in self.published for v in self.variants):
            self._published()

    @event("VariantPublished")
    def _variant_published(self, channel_id: str, external_id: str, url: str | None, at: datetime) -> None:
        self.published = {**self.published, channel_id: {"external_id": external_id, "url": url, "at": at}}

    @event("Published")
    def _published(self) -> None:
        self.status = S.PUBLISHED.value

    def record_failure(self, channel_id: str, kind: str, message: str) -> None:
        self.check_status(S.PUBLISHING, action="marked failed")
        self.check_channel(channel_id)
        self._publish_failed(channel_id=channel_id, kind=kind, message=message[:2000])

    @event("PublishFailed")
    def _publish_failed(self, channel_id: str, kind: str, message: str) -> None:
        self.status = S.FAILED.value

