"""The coordinator's wait for a hospital's node lost in the last round, against Flower's own link state.

The SuperLink's in-memory ``LinkState`` keeps the nodes, their activation stamps and the refusal of a
second activation while a node is online, exactly as ``flower-superlink`` does; the grid is Flower's own
``InMemoryGrid`` over it.
"""

import threading
import time

import pytest
from flwr.common.constant import NOOP_ACCOUNT_NAME, NOOP_FLWR_AID
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.superlink.federation.noop_federation_manager import NoOpFederationManager
from flwr.superlink.grid.inmemory_grid import InMemoryGrid

from federation.fl.membership import activation_stamps, wait_for_rejoin

HEARTBEAT_S = 30.0


@pytest.fixture
def superlink():
    """Flower's link state with one run and three activated nodes; yields (state, grid, node ids)."""
    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
    state = factory.state()
    run_id = state.create_run(None, None, None, {}, NOOP_FEDERATION_ID, None, NOOP_FLWR_AID, "serverapp")
    nodes = [state.create_node(NOOP_FLWR_AID, NOOP_ACCOUNT_NAME, f"hospital-{i}".encode(), HEARTBEAT_S) for i in range(3)]
    for node in nodes:
        assert state.activate_node(node, HEARTBEAT_S)
    grid = InMemoryGrid(factory)
    grid.set_run(state.get_run_info(run_ids=[run_id])[0])
    return state, grid, nodes


def test_a_restarted_node_is_back_once_the_superlink_activates_it_again(superlink):
    state, grid, nodes = superlink
    lost = {nodes[2]: activation_stamps(grid)[nodes[2]]}
    # Still "online" at the SuperLink (its heartbeats not yet missed): a restarted SuperNode is refused.
    assert not state.activate_node(nodes[2], HEARTBEAT_S)

    def restart():
        time.sleep(0.3)
        state.deactivate_node(nodes[2])  # what two missed heartbeats do
        time.sleep(0.3)
        assert state.activate_node(nodes[2], HEARTBEAT_S)  # the restarted SuperNode, same key, same node id

    thread = threading.Thread(target=restart)
    started = time.monotonic()
    thread.start()
    back = wait_for_rejoin(grid, lost, grace_s=30, poll_s=0.05)
    thread.join()
    assert back == {nodes[2]}
    assert time.monotonic() - started < 10  # it returned as the node came back, not at the end of the grace
    assert activation_stamps(grid)[nodes[2]] != lost[nodes[2]]


def test_a_node_that_does_not_come_back_is_waited_for_only_the_grace(superlink):
    state, grid, nodes = superlink
    lost = {nodes[1]: activation_stamps(grid)[nodes[1]], nodes[2]: activation_stamps(grid)[nodes[2]]}
    state.deactivate_node(nodes[1])  # gone for good
    clock = [0.0]
    back = wait_for_rejoin(grid, lost, grace_s=5, poll_s=1, clock=lambda: clock[0],
                           sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    # The other one stayed online with its old stamp (alive, only slow): not counted as back either.
    assert back == set()
    assert clock[0] == 5


def test_no_lost_node_means_no_wait_and_a_bad_grace_is_refused(superlink):
    _, grid, nodes = superlink
    assert wait_for_rejoin(grid, {}, grace_s=60, sleep=lambda s: pytest.fail("waited")) == set()
    # A grid that gives no activation stamps (""): a lost node is back as soon as it is listed online.
    assert wait_for_rejoin(grid, {nodes[0]: ""}, grace_s=60, sleep=lambda s: pytest.fail("waited")) == {nodes[0]}
    with pytest.raises(ValueError, match="grace"):
        wait_for_rejoin(grid, {nodes[0]: ""}, grace_s=-1)
    with pytest.raises(ValueError, match="polling"):
        wait_for_rejoin(grid, {nodes[0]: ""}, grace_s=1, poll_s=0)
