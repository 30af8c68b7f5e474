"""Commands of strategy and publishing: strategy revisions, campaigns, posts, crisis mode."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from domain.base import ParvisAggregate, kind_of, scope_of
from domain.campaign import Campaign
from domain.channel import Channel
from domain.errors import DomainError, InvalidInput, NotFound
from domain.post import CLIENT, INTERNAL, Post, PostStatus, Temperature, Variant
from domain.scheduling import resolve
from domain.strategy import EditorialLine, Objective, Persona, Strategy
from domain.tenant import Tenant

if TYPE_CHECKING:
    from domain.app import Outcome

A = TypeVar("A", bound=ParvisAggregate)
VERDICTS = ("approve", "request_changes", "reject")


class StepNotAllowed(DomainError):
    """The caller's role does not allow the approval step the post waits for."""

    code = "FORBIDDEN"


class PublishingCommands:
    """Mixed into the application service (domain.app.Parvis)."""

    load: Callable[..., Any]
    commit: Callable[..., int | None]
    done: Callable[..., Outcome[Any]]
    exists: Callable[[str], bool]
    tenant: Callable[..., Tenant]
    now: Callable[[], datetime]

    # ------------------------------------------------------------------ strategy and campaigns
    def strategy(self, tenant_key: str) -> Strategy | None:
        sid = Strategy.create_id(tenant_key)
        return self.load(sid, Strategy) if self.exists(sid) else None

    def check_channel(self, tenant_key: str, channel_id: str, field: str) -> None:
        if scope_of(channel_id) != tenant_key or kind_of(channel_id) != "channel" or not self.exists(channel_id):
            raise InvalidInput("no channel of this tenant has this id", field)
        if not self.load(channel_id, Channel, field).connected:
            raise InvalidInput("this channel is disconnected", field)

    def check_channels(self, tenant_key: str, channel_ids: Iterable[str], field: str) -> None:
        for i, channel_id in enumerate(channel_ids):
            self.check_channel(tenant_key, channel_id, f"{field}.{i}")

    def revise_strategy(
        self, tenant_key: str, reason: str, positioning: str | None, objectives: list[Objective],
        personas: list[Persona], editorial_line: EditorialLine,
    ) -> Outcome[int]:
        self.tenant(tenant_key).check_not_offboarded()
        for i, o in enumerate(objectives):
            if o.channel_id:
                self.check_channel(tenant_key, o.channel_id, f"objectives.{i}.channelId")
        for i, p in enumerate(personas):
            self.check_channels(tenant_key, p.channel_ids, f"personas.{i}.channelIds")
        for i, (channel_id, _) in enumerate(editorial_line.posts_per_week):
            self.check_channel(tenant_key, channel_id, f"editorialLine.postsPerWeek.{i}.channelId")
        strategy = self.strategy(tenant_key) or Strategy(tenant_key=tenant_key)
        number = strategy.revise(reason, positioning, objectives, personas, editorial_line)
        return self.done(number, strategy)

    def create_campaign(
        self, tenant_key: str, name: str, hashtag: str | None, starts_at: datetime | None,
        ends_at: datetime | None, objective_ids: list[str], budget: float | None,
    ) -> Outcome[str]:
        self.tenant(tenant_key).check_not_offboarded()
        name, hashtag = Campaign.check(name, hashtag, starts_at, ends_at, budget)
        known = set(s.objective_ids) if (s := self.strategy(tenant_key)) else set()
        for i, objective_id in enumerate(objective_ids):
            if objective_id not in known:
                raise InvalidInput("no objective of the strategy in force has this id", f"objectiveIds.{i}")
        campaign = Campaign(tenant_key=tenant_key, name=name, hashtag=hashtag, starts_at=starts_at,
                            ends_at=ends_at, objective_ids=list(objective_ids), budget=budget)
        return self.done(campaign.id, campaign)

    # ------------------------------------------------------------------ posts
    def post(self, post_id: str) -> Post:
        return self.load(post_id, Post, "postId")  # type: ignore[no-any-return]

    def _checked_variants(self, tenant_key: str, variants: list[Variant]) -> list[dict[str, Any]]:
        checked = Variant.checked(variants)
        for i, v in enumerate(variants):
            self.check_channel(tenant_key, v.channel_id, f"variants.{i}.channelId")
        return checked

    def draft_post(
        self, tenant_key: str, author_id: str, variants: list[Variant], campaign_id: str | None,
        objective_id: str | None, persona_id: str | None, temperature: str,
    ) -> Outcome[str]:
        self.tenant(tenant_key).check_not_offboarded()
        checked = self._checked_variants(tenant_key, variants)
        if campaign_id and (scope_of(campaign_id) != tenant_key or kind_of(campaign_id) != "campaign"
                            or not self.exists(campaign_id)):
            raise InvalidInput("no campaign of this tenant has this id", "campaignId")
        strategy = self.strategy(tenant_key)
        if objective_id and (strategy is None or objective_id not in strategy.objective_ids):
            raise InvalidInput("no objective of the strategy in force has this id", "objectiveId")
        if persona_id and (strategy is None or persona_id not in strategy.persona_ids):
            raise InvalidInput("no persona of the strategy in force has this id", "personaId")
        if temperature not in Temperature.__members__:
            raise InvalidInput("temperature must be HOT or COLD", "temperature")
        post = Post(tenant_key=tenant_key, author_id=author_id, variants=checked, campaign_id=campaign_id,
                    objective_id=objective_id, persona_id=persona_id, temperature=temperature)
        return self.done(post.id, post)

    def edit_post(self, post_id: str, variants: list[Variant], expected_version: int | None) -> Outcome[str]:
        post = self.post(post_id)
        post.edit(self._checked_variants(post.tenant_key, variants), expected_version)
        return self.done(post_id, post)

    def submit_post(self, post_id: str) -> Outcome[str]:
        post = self.post(post_id)
        tenant = self.tenant(post.tenant_key)
        tenant.check_not_offboarded()
        post.submit(tenant.approval_policy, tenant.approval_policy_version)
        return self.done(post_id, post)

    def review_post(self, post_id: str, user_id: str, verdict: str, comment: str | None,
                    steps: set[str]) -> Outcome[str]:
        """approve | request_changes | reject, refused unless the caller may take the step the post waits for."""
        if verdict not in VERDICTS:  # the verdict names a method of Post: never call any other
            raise InvalidInput("verdict must be approve, request_changes or reject", "verdict")
        post = self.post(post_id)
        step = post.step()
        if step not in steps:
            who = "internal reviewers (agency staff)" if step == INTERNAL else "the client's reviewers"
            raise StepNotAllowed(f"this post waits for {who}", "postId")
        if comment is not None and len(comment) > 4000:
            raise InvalidInput("comment must be at most 4000 characters", "comment")
        getattr(post, verdict)(user_id, comment)
        return self.done(post_id, post)

    def schedule_post(self, post_id: str, at: datetime) -> Outcome[str]:
        post = self.post(post_id)
        tenant = self.tenant(post.tenant_key)
        tenant.check_not_offboarded()
        post.schedule(resolve(at, tenant.timezone), self.now())  # a wall-clock time is the tenant's
        if tenant.crisis is not None:
            post.hold(tenant.crisis["reason"])  # a COLD post scheduled during a crisis waits at once
        return self.done(post_id, post)

    def cancel_post(self, post_id: str) -> Outcome[str]:
        post = self.post(post_id)
        post.cancel()
        return self.done(post_id, post)

    def expire_approval(self, post_id: str, submission: int) -> Outcome[bool]:
        post = self.post(post_id)
        expired = post.expire_approval(submission)
        return self.done(expired, post if expired else None)

    # ------------------------------------------------------------------ crisis
    def activate_crisis(self, tenant_key: str, reason: str, scheduled_post_ids: Iterable[str]) -> Outcome[int]:
        """Crisis mode: every scheduled COLD post of the tenant is held, in the same transaction."""
        tenant = self.tenant(tenant_key)
        tenant.activate_crisis(reason)
        held = [p for p in self._posts_of(tenant_key, scheduled_post_ids) if p.hold(reason)]
        return self.done(len(held), tenant, *held)

    def deactivate_crisis(self, tenant_key: str, held_post_ids: Iterable[str]) -> Outcome[int]:
        tenant = self.tenant(tenant_key)
        tenant.deactivate_crisis()
        now = self.now()
        released = [p for p in self._posts_of(tenant_key, held_post_ids) if p.release(now)]
        return self.done(len(released), tenant, *released)

    def _posts_of(self, tenant_key: str, post_ids: Iterable[str]) -> list[Post]:
        posts = []
        for post_id in post_ids:
            if scope_of(post_id) != tenant_key:
                raise NotFound("no post of this tenant has this id", "postId")
            posts.append(self.post(post_id))
        return posts

    # ------------------------------------------------------------------ publishing (workers)
    def start_publishing(self, post_id: str) -> Outcome[str]:
        """Due now: PUBLISHING, or HELD if the tenant went into crisis and the post is COLD."""
        post = self.post(post_id)
        if post.status == PostStatus.PUBLISHING.value:
            return self.done(post.status)  # a redelivered job continues where it stopped
        tenant = self.tenant(post.tenant_key)
        if tenant.crisis is not None and post.hold(tenant.crisis["reason"]):
            return self.done(post.status, post)
        post.start_publishing()
        return self.done(post.status, post)

    def record_variant_published(self, post_id: str, channel_id: str, external_id: str, url: str | None,
                                 at: datetime) -> Outcome[str]:
        post = self.post(post_id)
        post.record_published(channel_id, external_id, url, at)
        return self.done(post.status, post)

    def record_publish_failure(self, post_id: str, channel_id: str, kind: str, message: str) -> Outcome[str]:
        post = self.post(post_id)
        post.record_failure(channel_id, kind, message)
        return self.done(post.status, post)


__all__ = ["CLIENT", "INTERNAL", "PublishingCommands", "StepNotAllowed"]
