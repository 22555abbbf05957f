"""What the operator reads from Valkey's replies: pure parsing, on replies as a real 9.1.2 gives them."""

from __future__ import annotations

from valkey_operator.snapshot import SlotMigration
from valkey_operator.valkey_admin import parse_slot_migrations


def job(slots: str, state: str, created: str = "1795721180") -> list[bytes]:
    fields = {
        "name": "aac39cc57cbebe2561b8dacf5f6fd2e64a2a50ee", "operation": "EXPORT", "slot_ranges": slots,
        "target_node": "32f6c5368e5fd8f729a53c04ba8e87ab09098395",
        "source_node": "e200a730e62b1be0dc5939d1675d8f4ff5832dc1", "create_time": created,
        "last_update_time": created, "last_ack_time": created, "state": state, "message": "", "cow_size": "0",
        "remaining_repl_size": "0",
    }  # fmt: skip
    return [x.encode() for kv in fields.items() for x in kv]


def test_cluster_getslotmigrations_jobs_are_read_with_their_creation_time() -> None:
    # CLUSTER MIGRATESLOTS SLOTSRANGE 0 999 NODE b SLOTSRANGE 2000 2999 NODE b on a real 9.1.2: two jobs,
    # one per group, created together, the second waiting for the first.
    reply = [job("0-999", "snapshotting"), job("2000-2999", "waiting-to-snapshot")]
    assert parse_slot_migrations(reply) == (
        SlotMigration("EXPORT", "0-999", "e200a730e62b1be0dc5939d1675d8f4ff5832dc1",
                      "32f6c5368e5fd8f729a53c04ba8e87ab09098395", "snapshotting", 1795721180),
        SlotMigration("EXPORT", "2000-2999", "e200a730e62b1be0dc5939d1675d8f4ff5832dc1",
                      "32f6c5368e5fd8f729a53c04ba8e87ab09098395", "waiting-to-snapshot", 1795721180),
    )  # fmt: skip
    assert [m.slot_count for m in parse_slot_migrations(reply)] == [1000, 1000]
    # A reply without a usable time (or not a list at all) is still read, without one.
    assert parse_slot_migrations([job("7", "success", created="soon")])[0].created == 0
    assert parse_slot_migrations(b"ERR") == ()
