"""Failover, pass by pass: a lost primary, a graceful deletion, a scale-down, a split brain, a new cluster.

Uses test_decide's World (what the API server and the pods hold after each decided write): pods boot as
replicas, the primary's offset is what was written, and a replica holds the offset it last synced.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.unit.conftest import NOW
from tests.unit.test_decide import FQDN, World, cluster, condition, kinds, merge, pass_, running
from valkey_operator.actions import Apply, DeletePod, Promote, Switchover
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.decide import Decision, decide, needs_fast_look
from valkey_operator.reconcile import changed
from valkey_operator.snapshot import ROLE_SLAVE, PodReport, Replication


def written(world: World, offsets: dict[str, int]) -> None:
    """Writes reached the primary; each replica acknowledged up to its offset (then its link dropped)."""
    world.data = max(offsets.values())
    world.synced.update(offsets)


def lose(world: World, pod: str) -> None:
    """The pod is gone: no report, no pod object (deleted, or its node died)."""
    del world.objects[("Pod", pod)]
    world.reports.pop(pod, None)
    if world.primary == pod:
        world.primary = None
    for replica in list(world.reports):
        rep = world.reports[replica].replication
        assert rep is not None
        world.reports[replica] = PodReport(
            Replication(
                ROLE_SLAVE, rep.master_host, link_up=False, offset=world.synced.get(replica, 0), release=rep.release
            )
        )


def events(d: Decision) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in d.events]


def sts_replicas(d: Decision) -> list[int]:
    return [
        a.manifest["spec"]["replicas"]
        for a in d.actions
        if isinstance(a, Apply) and a.manifest["kind"] == "StatefulSet"
    ]


def test_a_new_cluster_promotes_the_recorded_pod_once_it_answers() -> None:
    c = cluster()
    world = World()
    pass_(world, c)
    for pod in ("cache-1", "cache-2"):
        world.start_pod(pod)
    world.report()
    d = pass_(world, c)
    # Every pod boots as a replica; the recorded primary (cache-0) is not up yet: nothing is promoted.
    assert not [a for a in d.actions if isinstance(a, Promote)]
    assert d.status["phase"] == "Provisioning"
    assert condition(d, "Degraded")["status"] == "False"
    world.start_pod("cache-0")
    world.report()
    d = pass_(world, c)
    assert kinds(d.actions)[:2] == ["promote cache-0", "label cache-0 primary"]
    assert events(d) == [("Normal", "PrimaryElected")]
    assert d.metrics.failovers == ()
    pass_(world, c)
    d = pass_(world, c)
    assert (d.status["phase"], d.status["primary"]) == ("Ready", "cache-0")
    # Without persistence, status says plainly what losing every pod would mean.
    assert "losing every pod at once empties it" in condition(d, "Ready")["message"]


def test_a_primary_that_restarted_empty_is_never_the_source_the_most_advanced_replica_is_promoted() -> None:
    c = cluster()
    world = running(c)
    written(world, {"cache-1": 480, "cache-2": 500})
    # The primary's server was killed and restarted: empty, and (as every pod) a replica of itself.
    world.start_pod("cache-0")
    world.report()
    assert world.reports["cache-0"].replication == Replication(ROLE_SLAVE, FQDN.format("cache-0"), False, 0)
    d = pass_(world, c)
    # At once (it answered as a replica: what it held is gone), not after failover.after.
    assert kinds(d.actions) == [
        "promote cache-2",
        "label cache-2 primary",
        "label cache-0 replica",
        "apply ConfigMap/cache-config",
    ]
    failed_over = next(e for e in d.events if e.reason == "FailedOver")
    assert "cache-2 (offset 500)" in failed_over.message
    assert "cache-0 (offset 0, restarted empty)" in failed_over.message
    assert "cache-1 at 480" in failed_over.message
    assert d.metrics.failovers == ("primary-lost",)
    assert d.status["phase"] == "Degraded"
    assert condition(d, "Degraded")["reason"] == "FailingOver"
    assert condition(d, "Ready")["status"] == "False"
    assert needs_fast_look(d.status, NOW, timedelta(0))
    d = pass_(world, c)
    assert sorted(kinds(d.actions)) == [
        "repoint cache-0 -> cache-2.cache-headless.default.svc",
        "repoint cache-1 -> cache-2.cache-headless.default.svc",
    ]
    d = pass_(world, c)
    assert (d.status["phase"], d.status["primary"]) == ("Ready", "cache-2")
    assert "failover" not in world.status
    assert world.data == 500  # nothing acknowledged by the most advanced replica was lost
    assert world.synced["cache-0"] == 500  # the old primary re-synced from the new one, not the other way


def test_a_primary_that_does_not_answer_is_promoted_away_after_failover_after() -> None:
    c = cluster(failover={"after": "10s"})
    world = running(c)
    written(world, {"cache-1": 300, "cache-2": 200})
    lose(world, "cache-0")
    d = pass_(world, c)
    assert not [a for a in d.actions if isinstance(a, Promote)]
    assert d.status["failover"]["state"] == "PrimaryLost"
    assert condition(d, "Ready")["reason"] == "PrimaryLost"
    assert condition(d, "Degraded")["reason"] == "PrimaryLost"
    assert d.status["primary"] is None or "primary" not in world.status
    assert d.retry_after == 10.0
    d = decide(c, world.snapshot(), NOW + timedelta(seconds=4))
    assert not [a for a in d.actions if isinstance(a, Promote)]
    assert d.retry_after == 6.0
    d = pass_(world, c, NOW + timedelta(seconds=10))
    assert kinds(d.actions)[:2] == ["promote cache-1", "label cache-1 primary"]
    assert d.metrics.failovers == ("primary-lost",)
    assert "not answering" in next(e.message for e in d.events if e.reason == "FailedOver")
    # The old primary comes back as a replica of the recorded primary (cache-1 now), and follows it.
    world.start_pod("cache-0")
    world.report()
    pass_(world, c, NOW + timedelta(seconds=11))
    d = pass_(world, c, NOW + timedelta(seconds=12))
    assert (d.status["phase"], d.status["primary"]) == ("Ready", "cache-1")
    assert world.data == 300


def every_pod_restarts(world: World, back: tuple[str, ...]) -> None:
    """Every pod went at once (the StatefulSet deleted); those in `back` run again, each restored from its
    own volume and, as every pod boots, a replica that has replicated nothing yet (offset 0)."""
    for pod in ("cache-0", "cache-1", "cache-2"):
        lose(world, pod)
    for pod in back:
        world.start_pod(pod)
    world.report()


def test_with_persistence_every_pod_restarted_the_lost_primary_whose_volume_holds_the_last_writes_is_waited_for() -> (
    None
):
    c = cluster(persistence={"enabled": True})
    world = running(c)
    written(world, {"cache-1": 300, "cache-2": 300})
    every_pod_restarts(world, ("cache-1", "cache-2"))
    d = pass_(world, c)
    # failover.after (5 s) is long past, and the replicas answer: offsets say nothing (0, both restarted),
    # and the primary acknowledged writes after they had stopped. Its volume has them: wait for it.
    d = pass_(world, c, NOW + timedelta(seconds=30))
    assert not [a for a in d.actions if isinstance(a, Promote)]
    assert d.status["failover"]["waitingUntil"] == "2026-06-01T12:02:00Z"
    assert condition(d, "Degraded")["reason"] == "PrimaryLost"
    assert "cache-0's volume holds the last writes" in condition(d, "Degraded")["message"]
    assert d.retry_after == 90.0
    world.start_pod("cache-0")
    world.report()
    d = pass_(world, c, NOW + timedelta(seconds=40))
    assert kinds(d.actions)[:2] == ["promote cache-0", "label cache-0 primary"]


def test_with_persistence_a_lost_primary_that_never_comes_back_is_replaced_after_the_volume_wait() -> None:
    c = cluster(persistence={"enabled": True})
    world = running(c)
    written(world, {"cache-1": 300, "cache-2": 300})
    every_pod_restarts(world, ("cache-1", "cache-2"))
    pass_(world, c)
    d = pass_(world, c, NOW + timedelta(seconds=119))
    assert not [a for a in d.actions if isinstance(a, Promote)]
    d = pass_(world, c, NOW + timedelta(seconds=120))
    assert kinds(d.actions)[:2] == ["promote cache-1", "label cache-1 primary"]
    assert "waitingUntil" not in d.status["failover"]


def test_without_persistence_every_pod_restarted_is_not_waited_for_there_is_no_volume() -> None:
    c = cluster()
    world = running(c)
    written(world, {"cache-1": 300, "cache-2": 300})
    every_pod_restarts(world, ("cache-1", "cache-2"))
    pass_(world, c)
    d = pass_(world, c, NOW + timedelta(seconds=5))
    assert kinds(d.actions)[:2] == ["promote cache-1", "label cache-1 primary"]


def test_with_failover_disabled_no_replica_is_promoted_and_an_empty_primary_never_takes_the_role() -> None:
    c = cluster(failover={"enabled": False})
    world = running(c)
    written(world, {"cache-1": 300, "cache-2": 300})
    lose(world, "cache-0")
    d = pass_(world, c, NOW + timedelta(minutes=5))
    assert not [a for a in d.actions if isinstance(a, Promote)]
    assert condition(d, "Degraded")["reason"] == "PrimaryLost"
    # It comes back empty: giving it the role would make the replicas copy its empty dataset.
    world.start_pod("cache-0")
    world.report()
    d = pass_(world, c, NOW + timedelta(minutes=6))
    assert not [a for a in d.actions if isinstance(a, Promote)]
    assert condition(d, "Ready")["reason"] == "PrimaryLost"
    assert (world.synced["cache-1"], world.synced["cache-2"]) == (300, 300)


def test_with_failover_disabled_the_recorded_pod_takes_the_role_back_when_nobody_holds_more() -> None:
    c = cluster(failover={"enabled": False})
    world = running(c)
    world.start_pod("cache-0")  # nothing was written: every pod holds the same (nothing)
    world.report()
    d = pass_(world, c)
    assert kinds(d.actions)[0] == "promote cache-0"


def test_a_primary_being_deleted_hands_over_before_it_goes() -> None:
    c = cluster()
    world = running(c)
    written(world, {"cache-1": 100, "cache-2": 100})
    world.objects[("Pod", "cache-0")]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    d = pass_(world, c)
    assert [a for a in d.actions if isinstance(a, Switchover)] == [Switchover("cache-0", "cache-1")]
    assert d.metrics.failovers == ("switchover",)
    assert condition(d, "Degraded")["reason"] == "FailingOver"
    assert not [a for a in d.actions if isinstance(a, DeletePod)]
    # FAILOVER done: cache-1 is primary; the labels and the ConfigMap follow at once.
    d = pass_(world, c)
    assert kinds(d.actions)[:2] == ["label cache-1 primary", "repoint cache-2 -> cache-1.cache-headless.default.svc"]
    assert d.status["primary"] == "cache-1"


def primary_on_last_pod(c: ValkeyCluster) -> World:
    """Three running pods whose primary is cache-2 (where a rotation leaves it), after a pass."""
    world = running(c)
    world.primary = "cache-2"
    world.follows = {"cache-0": "cache-2", "cache-1": "cache-2"}
    world.report()
    pass_(world, c)
    return world


def test_a_scale_down_moves_the_primary_to_a_pod_that_stays_before_the_statefulset_shrinks() -> None:
    c = cluster()
    world = primary_on_last_pod(c)
    one = cluster(replicas=1)
    d = pass_(world, one)
    assert sts_replicas(d) == []  # held at 3: the primary's ordinal stays until the role has moved
    assert [a for a in d.actions if isinstance(a, Switchover)] == [Switchover("cache-2", "cache-0")]
    d = pass_(world, one)
    assert sts_replicas(d) == [1]
    assert d.status["primary"] == "cache-0"


def test_two_primaries_the_recorded_one_keeps_the_role_and_the_other_is_fenced() -> None:
    c = cluster()
    world = running(c)
    world.primary = "cache-0"
    world.report()
    world.reports["cache-2"] = PodReport(Replication("master", offset=7))
    d = pass_(world, c)
    assert "repoint cache-2 -> cache-0.cache-headless.default.svc" in kinds(d.actions)
    assert ("Warning", "SplitBrain") in events(d)


def test_no_pod_restarts_for_a_rollout_while_the_primary_is_lost() -> None:
    c = cluster()
    world = running(c)
    lose(world, "cache-0")
    d = pass_(world, cluster(resources={"limits": {"memory": "1Gi"}}))
    assert not [a for a in d.actions if isinstance(a, (DeletePod, Switchover))]


def test_a_hand_edit_of_the_recorded_primary_is_not_believed() -> None:
    c = cluster()
    world = running(c)
    world.objects[("ConfigMap", "cache-config")]["data"]["primary"] = "cache-1"
    d = pass_(world, c)
    applied = [a.manifest for a in d.actions if isinstance(a, Apply) and a.manifest["kind"] == "ConfigMap"]
    assert [m["data"]["primary"] for m in applied] == ["cache-0"]
    assert not [a for a in d.actions if "label" in str(a)]


def test_an_empty_pod_is_never_promoted_while_a_pod_that_may_hold_the_data_has_not_answered() -> None:
    c = cluster()
    world = running(c)
    written(world, {"cache-1": 500, "cache-2": 500})
    world.start_pod("cache-0")  # restarted empty
    world.start_pod("cache-2")  # restarted empty too
    world.report()
    world.reports.pop("cache-1")  # holds the data, but does not answer (loading, a timeout)
    for later in (0, 10, 600):
        d = pass_(world, c, NOW + timedelta(seconds=later))
        assert not [a for a in d.actions if isinstance(a, Promote)], later
        assert condition(d, "Degraded")["reason"] == "PrimaryLost"
        world.reports.pop("cache-1", None)


def test_no_promotion_while_a_replica_is_still_linked_to_the_primary_the_operator_cannot_reach() -> None:
    c = cluster()
    world = running(c)
    written(world, {"cache-1": 100, "cache-2": 100})
    world.reports.pop("cache-0")  # only the operator's connection fails: the replicas' links are up
    d = pass_(world, c, NOW)
    world.reports.pop("cache-0", None)
    d = pass_(world, c, NOW + timedelta(minutes=1))
    assert not [a for a in d.actions if isinstance(a, Promote)]
    assert condition(d, "Ready")["status"] == "False"


def test_a_primary_cut_off_from_everyone_is_promoted_away_once_its_replicas_stop_hearing_it() -> None:
    # A network cut: the operator cannot reach the primary, and the replicas' links stay up on paper (for
    # repl-timeout, 60 s) while their primary, which pings every second, has gone silent.
    c = cluster(failover={"after": "5s"})
    world = running(c)
    written(world, {"cache-1": 100, "cache-2": 90})

    def silent_for(seconds: int) -> None:
        world.reports.pop("cache-0", None)
        for pod in ("cache-1", "cache-2"):
            rep = Replication(ROLE_SLAVE, FQDN.format("cache-0"), link_up=True, offset=world.synced[pod])
            world.reports[pod] = PodReport(replace(rep, last_io_s=seconds))

    silent_for(1)
    d = pass_(world, c, NOW)
    assert d.status["failover"]["state"] == "PrimaryLost"
    silent_for(1)  # still heard a second ago: alive, only the operator cannot reach it
    d = pass_(world, c, NOW + timedelta(seconds=6))
    assert not [a for a in d.actions if isinstance(a, Promote)]
    silent_for(4)  # not yet failover.after (5 s)
    d = pass_(world, c, NOW + timedelta(seconds=7))
    assert not [a for a in d.actions if isinstance(a, Promote)]
    silent_for(6)
    d = pass_(world, c, NOW + timedelta(seconds=8))
    assert kinds(d.actions)[:2] == ["promote cache-1", "label cache-1 primary"]
    assert d.metrics.failovers == ("primary-lost",)


def test_the_replicas_silence_dates_the_loss_so_a_late_first_look_promotes_at_once() -> None:
    c = cluster(failover={"after": "5s"})
    world = running(c)
    written(world, {"cache-1": 100, "cache-2": 100})
    world.reports.pop("cache-0")
    for pod, silent in (("cache-1", 9), ("cache-2", 8)):
        rep = Replication(ROLE_SLAVE, FQDN.format("cache-0"), link_up=True, offset=100, last_io_s=silent)
        world.reports[pod] = PodReport(rep)
    d = pass_(world, c, NOW)  # the operator's first look, 8 s after the primary went silent
    assert kinds(d.actions)[:1] == ["promote cache-1"]
    assert d.status["failover"]["since"] == "2026-06-01T11:59:52Z"


def test_after_a_failover_a_pod_that_does_not_answer_is_looked_at_again_soon() -> None:
    c = cluster()
    world = running(c)
    world.reports.pop("cache-2")  # running, but cut off: it may come back as a second primary
    d = pass_(world, c)
    assert d.retry_after == 5.0
    assert not d.actions
    world.report()
    d = pass_(world, c)
    assert d.retry_after is None


def test_a_scale_down_while_the_primary_is_lost_keeps_the_most_advanced_replica() -> None:
    c = cluster()
    world = running(c)
    written(world, {"cache-1": 480, "cache-2": 500})
    lose(world, "cache-0")
    two = cluster(replicas=2)
    d = pass_(world, two, NOW)
    assert sts_replicas(d) == []  # held at 3 while the primary is lost
    d = pass_(world, two, NOW + timedelta(seconds=5))
    assert kinds(d.actions)[0] == "promote cache-2"  # the most advanced, though the scale-down removes it
    assert sts_replicas(d) == []
    world.start_pod("cache-0")
    world.report()
    d = pass_(world, two, NOW + timedelta(seconds=6))
    # cache-2 hands over to a pod that stays before the StatefulSet shrinks.
    assert next(a for a in d.actions if isinstance(a, Switchover)).pod == "cache-2"
    d = pass_(world, two, NOW + timedelta(seconds=7))
    pass_(world, two, NOW + timedelta(seconds=8))
    assert world.objects[("StatefulSet", "cache")]["spec"]["replicas"] == 2
    assert world.data == 500


def test_a_failover_between_its_steps_is_waited_for_not_mistaken_for_a_crash() -> None:
    c = cluster()
    world = running(c)
    written(world, {"cache-1": 100, "cache-2": 100})
    # FAILOVER TO cache-1 in progress: the old primary already says replica, nobody says primary yet.
    world.primary = None
    world.report()
    world.reports["cache-0"] = PodReport(
        Replication(ROLE_SLAVE, FQDN.format("cache-1"), offset=100, failover_state="failover-in-progress")
    )
    d = pass_(world, c)
    assert not [a for a in d.actions if isinstance(a, Promote)]
    assert d.metrics.failovers == ()
    assert d.retry_after == 1.0


def test_a_failed_promotion_does_not_start_the_clock_again() -> None:
    c = cluster()
    world = running(c)
    written(world, {"cache-1": 100, "cache-2": 90})
    lose(world, "cache-0")
    pass_(world, c, NOW)
    d = decide(c, world.snapshot(), NOW + timedelta(seconds=5))
    assert kinds(d.actions)[0] == "promote cache-1"
    # The promotion failed (the pod did not answer): the status of that pass is written, the roles unchanged.
    merge(world.status, changed(world.status, d.status))
    d = decide(c, world.snapshot(), NOW + timedelta(seconds=6))
    assert kinds(d.actions)[0] == "promote cache-1"  # again at once, not after another failover.after
    assert d.status["failover"]["since"] == NOW.strftime("%Y-%m-%dT%H:%M:%SZ")  # when it was first found lost


def test_a_certificate_problem_does_not_stop_a_failover() -> None:
    c = cluster()
    world = running(c)
    written(world, {"cache-1": 100, "cache-2": 90})
    lose(world, "cache-0")
    broken = cluster(tls={"issuer": {"type": "CA", "secretName": "gone"}})
    d = pass_(world, broken, NOW)
    assert condition(d, "CertificatesReady")["status"] == "False"
    d = pass_(world, broken, NOW + timedelta(seconds=5))
    assert kinds(d.actions)[:2] == ["promote cache-1", "label cache-1 primary"]
    assert not [a for a in d.actions if isinstance(a, Apply)]  # nothing else is written
    assert d.status["primary"] == "cache-1"


def test_offsets_compare_on_the_lost_primarys_replication_history_first() -> None:
    """cache-2 reports the higher offset, but on another history (a fenced old primary that took writes
    while cut off and never re-synced): promoting it would make cache-1 drop what the lost primary had."""
    c = cluster(failover={"after": "10s"})
    world = running(c)
    world.reports["cache-0"] = PodReport(Replication("master", offset=300, replid="a" * 40))
    pass_(world, c)
    assert world.status["replicationId"] == "a" * 40
    lose(world, "cache-0")
    assert world.status["replicationId"] == "a" * 40
    assert not [a for a in pass_(world, c).actions if isinstance(a, Promote)]  # the loss is noticed
    world.reports["cache-1"] = PodReport(Replication(ROLE_SLAVE, FQDN.format(0), offset=300, replid="a" * 40))
    world.reports["cache-2"] = PodReport(Replication(ROLE_SLAVE, FQDN.format(0), offset=900, replid="b" * 40))
    d = decide(c, world.snapshot(), NOW + timedelta(seconds=10))
    assert kinds(d.actions)[0] == "promote cache-1"
    assert "cache-2 at 900 on another replication history" in next(
        e.message for e in d.events if e.reason == "FailedOver"
    )
    # With no pod on that history (or none recorded), the highest offset wins as before.
    world.reports["cache-1"] = PodReport(Replication(ROLE_SLAVE, FQDN.format(0), offset=300, replid="c" * 40))
    d = decide(c, world.snapshot(), NOW + timedelta(seconds=10))
    assert kinds(d.actions)[0] == "promote cache-2"


def test_a_promoted_replica_is_still_on_the_history_it_came_from() -> None:
    promoted = Replication("master", offset=10, replid="n" * 40, replid2="a" * 40)
    assert promoted.on_history("a" * 40)
    assert promoted.on_history("n" * 40)
    assert not Replication(ROLE_SLAVE).on_history("")
