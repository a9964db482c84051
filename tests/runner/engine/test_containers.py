"""Container records: IDs, names, lookup, the per-container lock, state and removal."""

from __future__ import annotations

import os
import threading
import time

import pytest
from minicache.errors import Conflict, InvalidSpec, NotFound
from minicache.store import Store
from minirun.engine.containers import EXITED, RUNNING, ContainerStore, State, now, runtime
from minirun.errors import ContainerStateError


def test_create_and_lookup(store: Store) -> None:
    cs = ContainerStore(store)
    c = cs.create({"Image": "sha256:" + "0" * 64}, name="web")
    assert len(c.id) == 64 and not c.id.strip("0123456789abcdef")
    assert c.record["Name"] == "web" and c.record["Created"].endswith("Z")
    assert all(os.path.isdir(os.path.join(c.dir, name)) for name in ("rootfs", "upper", "work"))
    assert c.state().Status == "created"
    for ref in (c.id, "web", c.id[:12], c.id[:4]):
        assert cs.get(ref).id == c.id
    with pytest.raises(NotFound):
        cs.get("nope")
    with pytest.raises(InvalidSpec):
        cs.get("")
    assert os.listdir(store.tmp_dir) == []


def test_generated_names_are_unique(store: Store) -> None:
    cs = ContainerStore(store)
    names = {cs.create({}, durable=False).name for _ in range(30)}
    assert len(names) == 30
    assert all("_" in n for n in names)


def test_name_conflict_and_stale_name(store: Store) -> None:
    cs = ContainerStore(store)
    first = cs.create({}, name="db")
    with pytest.raises(Conflict, match="already in use"):
        cs.create({}, name="db")
    assert len(cs.ids()) == 1 and os.listdir(store.tmp_dir) == []  # the loser left nothing behind
    os.symlink("f" * 64, os.path.join(cs.names_dir, "stale"))  # a name whose container vanished (crash between steps)
    assert cs.create({}, name="stale").name == "stale"
    cs.remove(first)
    assert cs.create({}, name="db").name == "db"  # a removed container's name is free again


def test_invalid_name(store: Store) -> None:
    with pytest.raises(InvalidSpec, match="invalid container name"):
        ContainerStore(store).create({}, name="../../etc")


def test_ambiguous_prefix(store: Store) -> None:
    cs = ContainerStore(store)
    ids = [cs.create({}, durable=False).id for _ in range(40)]
    shared = next(a[0] for a in ids if sum(1 for b in ids if b[0] == a[0]) > 1)
    with pytest.raises(InvalidSpec, match="ambiguous"):
        cs.get(shared)


def test_state_roundtrip_and_liveness(store: Store) -> None:
    from minicache.process import boot_id, start_time

    c = ContainerStore(store).create({})
    me = os.getpid()
    c.set_state(State(RUNNING, me, start_time(me), StartedAt=now(), BootId=boot_id()))
    state = c.state()
    assert state.Status == RUNNING and state.Pid == me
    # The record is only a claim: the runtime, which has no container of that ID, says the process is gone.
    assert not c.process_alive(state) and runtime(c.store).status(c.id) == "stopped"
    assert not c.process_alive(State(EXITED, me))
    c.update_record({"Extra": 1})
    assert ContainerStore(store).get(c.id).record["Extra"] == 1


def test_lock_serialises_and_notices_removal(store: Store) -> None:
    cs = ContainerStore(store)
    c = cs.create({})
    order: list[str] = []

    def other() -> None:
        with cs.get(c.id).lock():
            order.append("other")

    with c.lock():
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.1)
        order.append("first")
    t.join()
    assert order == ["first", "other"]
    gone = cs.get(c.id)
    cs.remove(c)
    with pytest.raises(NotFound):
        gone.lock().__enter__()
    assert cs.ids() == [] and os.listdir(cs.names_dir) == []


@pytest.mark.root
def test_remove_refuses_a_mounted_rootfs(store: Store) -> None:
    from minicache import syscalls

    cs = ContainerStore(store)
    c = cs.create({})
    syscalls.mount("tmpfs", c.rootfs, "tmpfs")
    try:
        with pytest.raises(ContainerStateError, match="mounted"):
            cs.remove(c)
    finally:
        syscalls.umount(c.rootfs)
    cs.remove(c)
    assert cs.ids() == []
