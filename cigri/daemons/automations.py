"""The automations daemon (`cigri-automations`, issue 13): evaluates the enabled rules and runs
the actions of their firings, exactly once; then submits the campaigns of the due schedules
(`cigri.daemons.schedules`).

Its own daemon rather than a step of the notifier's pass: its actions change campaigns (pause,
cancel, fix and resubmit), which is not a notifier's business, a slow evaluation must not hold up
the delivery of messages (nor a relay outage the rules), and it gets its own lease, heartbeat and
interval (`AUTOMATIONS_INTERVAL`). Its notify action goes through the notifier all the same: it
records a `notify` event, which the notifier turns into messages on every channel.

Each pass:
1. **evaluate** (`cigri.daemons.rule_evaluation`), in one transaction: read the events opened
   since the id watermark and closed since the time watermark that some rule waits for, and for
   metric and silence rules the maintained counters of the campaigns in their scope
   (`cigri.storage.stats`: a few rows per campaign, whatever its size); for every firing decided
   (scope, cooldown, threshold: the pure `cigri.domain.automations`) insert an
   `automation_firings` row (unique key: rule, campaign and event or window) and its `RULE_FIRED`
   campaign event, and move the watermarks. A crash before the commit loses nothing (the
   watermarks did not move), after it nothing is decided twice.
2. **act**: each pending firing in its own transaction: lock it, run its actions (each in a
   savepoint: one refused action does not undo the others), mark it done with their outcome. The
   actions and the mark commit together, so a crash between the two steps runs the actions once,
   at the next pass.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection

from cigri.config import Settings
from cigri.daemons.base import Daemon, DaemonContext
from cigri.daemons.base import main as daemon_main
from cigri.daemons.rule_evaluation import evaluate
from cigri.daemons.schedules import run_due_schedules
from cigri.domain import automations as domain
from cigri.domain.errors import CigriError
from cigri.domain.states import CampaignState, EventClass, EventState
from cigri.storage import actions as campaign_actions
from cigri.storage import automation_firings as firings
from cigri.storage import automations as store
from cigri.storage.campaigns import add_parameters
from cigri.storage.events import record_event

log = logging.getLogger(__name__)

FIRING_BATCH: Final = 200


def run_firing(conn: Connection, firing: store.Firing, *, now: datetime) -> str:
    """Run a firing's actions in the caller's transaction; returns their outcome, one per
    action."""
    outcomes = []
    for action in firing.actions:
        kind = action["kind"]
        savepoint = conn.begin_nested()
        try:
            outcomes.append(_run_action(conn, firing, action, now=now))
            savepoint.commit()
        except CigriError as error:
            savepoint.rollback()
            outcomes.append(f"{kind}: not done ({error})")
    return "; ".join(outcomes)


def _run_action(conn: Connection, firing: store.Firing, action: dict[str, Any], *,
                now: datetime) -> str:
    kind, campaign_id = action["kind"], firing.campaign_id
    assert campaign_id is not None
    if kind == "notify":
        message = action.get("message") or (
            f"rule #{firing.rule_id} fired on campaign {campaign_id}: {firing.trigger}")
        to_admins = action.get("to") == "admins"
        record_event(conn, class_=EventClass.NOTIFY, code=domain.RULE_NOTIFY,
                     campaign_id=None if to_admins else campaign_id, state=EventState.CLOSED,
                     message=(f"Campaign {campaign_id}: {message}" if to_admins else message),
                     now=now)
        return "notify: sent to " + ("the admins" if to_admins else "the owner")
    if kind == "pause":
        campaign_actions.pause_campaign(conn, campaign_id, now=now)
        return f"pause: campaign {campaign_id} {CampaignState.PAUSED.value}"
    if kind == "resume":
        campaign_actions.resume_campaign(conn, campaign_id, now=now)
        return f"resume: campaign {campaign_id} {CampaignState.IN_TREATMENT.value}"
    if kind == "cancel":
        campaign_actions.cancel_campaign(conn, campaign_id, now=now)
        return f"cancel: campaign {campaign_id} {CampaignState.CANCELLED.value}"
    if kind == "blacklist":
        return _blacklist(conn, firing, action, now=now)
    if kind == "add_tasks":
        added = add_parameters(conn, campaign_id, action.get("params") or [], now=now)
        return f"add_tasks: {added} tasks added to campaign {campaign_id}"
    closed = campaign_actions.fix_campaign_events(conn, campaign_id,
                                                  resubmit=bool(action.get("resubmit")), now=now)
    return f"fix: {closed} events closed" + (" (failed tasks resubmitted)"
                                              if action.get("resubmit") else "")


def _blacklist(conn: Connection, firing: store.Firing, action: dict[str, Any], *,
               now: datetime) -> str:
    campaign_id = firing.campaign_id
    assert campaign_id is not None
    name = action.get("cluster")
    cluster_id = firings.cluster_id_by_name(conn, name) if name else action.get("cluster_id")
    if cluster_id is None:
        raise CigriError("the trigger named no cluster")
    label = name or store.cluster_names(conn).get(cluster_id, str(cluster_id))
    opened = firings.open_rule_blacklist(
        conn, campaign_id=campaign_id, cluster_id=cluster_id, now=now,
        message=f"blacklisted by rule #{firing.rule_id}: {firing.trigger}")
    if opened is None:
        return f"blacklist: campaign {campaign_id} already blacklisted on {label}"
    return f"blacklist: campaign {campaign_id} blacklisted on {label} (event #{opened})"


class AutomationsDaemon(Daemon):
    """One automations daemon for the grid (the role lease keeps a second one on standby)."""

    role = "automations"

    def run_once(self) -> bool:
        """Decide the firings, run their actions, then the due schedules (module docstring).
        False (idle: the wait may stretch) only when nothing happened and no rule or schedule
        is enabled: adding or enabling one wakes this daemon (NOTIFY)."""
        done = [self.evaluate(), self.act(), self.run_schedules()]
        if any(done):
            return True
        with self.engine.begin() as conn:
            return store.has_enabled_work(conn)

    def __init__(self, context: DaemonContext, **options: Any) -> None:
        """`options`: the `Daemon`'s (interval, lease, owner...)."""
        super().__init__(engine=context.engine, settings=context.settings, clock=context.clock,
                         stop=context.stop, **options)

    @classmethod
    def default_interval(cls, settings: Settings) -> timedelta:
        return settings.automations_interval

    def run_schedules(self) -> int:
        """Submit the campaigns of the due schedules (`cigri.daemons.schedules`)."""
        return run_due_schedules(self.engine, self.settings, self.clock.now())

    def evaluate(self) -> int:
        with self.engine.begin() as conn:
            fired = evaluate(conn, now=self.clock.now())
        if fired:
            log.info("automations: %d rule firings recorded", fired, extra={"action": "fire"})
        return fired

    def act(self) -> int:
        """Run the actions of every pending firing, one transaction each; returns how many."""
        done = 0
        with self.engine.begin() as conn:
            pending = firings.pending_firing_ids(conn, limit=FIRING_BATCH)
        for firing_id in pending:
            if self.stop.is_set():
                break
            with self.engine.begin() as conn:
                firing = firings.claim_firing(conn, firing_id)
                if firing is None:
                    continue
                now = self.clock.now()
                outcome = run_firing(conn, firing, now=now)
                firings.finish_firing(conn, firing_id, outcome=outcome, now=now)
            log.info("automations: rule %d on campaign %s: %s", firing.rule_id,
                     firing.campaign_id, outcome, extra={"campaign_id": firing.campaign_id})
            done += 1
        return done


def main() -> None:
    daemon_main(AutomationsDaemon, name="cigri-automations")
