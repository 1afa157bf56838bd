"""The other instances' clients as this instance sees them (cluster/peers.py RemoteClients): when a client's
card moves to another connection (it moved: a rolling restart), no new work goes to the old one, but the
answers in flight there go on over the link; a client whose link is gone ends them at once."""

from arenahub.platform.cluster.clients import ClientCard
from arenahub.platform.cluster.peers import RemoteClients, RemoteSession
from arenahub.platform.tunnel_session import ClientGone
from arenahub.protocol import frames


class FakeLink:
    def __init__(self) -> None:
        self.closed = False
        self.sent: list[object] = []

    def send(self, frame: object, session: object = None) -> None:
        self.sent.append(frame)

    def forget(self, request_id: str) -> None:
        pass


def remote_with(card: ClientCard, link: FakeLink) -> tuple[RemoteClients, RemoteSession]:
    remote = RemoteClients("west", lambda: "secret", lambda instance: None, window=lambda: 65536,
                           slow_consumer_seconds=lambda: 5.0)
    remote._http = object()  # type: ignore[assignment]  # no link is made to a new instance here
    session = RemoteSession(card, link, window=65536, slow_consumer_seconds=5.0)  # type: ignore[arg-type]
    remote._sessions[card.client_id] = session
    return remote, session


def card(connection_id: str, instance: str) -> ClientCard:
    return ClientCard(client_id="c1", instance=instance, connection_id=connection_id, models=["m"], max_concurrent=4)


async def test_a_client_that_moved_finishes_its_answers_in_flight_over_the_old_link() -> None:
    remote, old = remote_with(card("k1", "east"), FakeLink())
    inbox = old.open("r1", b"{}")
    remote.sync([card("k2", "north")])  # it connected to north: its card says so
    assert remote.get("c1") is None  # no new work for the old connection
    assert not old.closed
    old.deliver(frames.End(id="r1"))
    assert isinstance(inbox.get_nowait(), frames.End)


async def test_a_client_whose_link_is_gone_ends_its_answers_at_once() -> None:
    link = FakeLink()
    remote, old = remote_with(card("k1", "east"), link)
    inbox = old.open("r1", b"{}")
    link.closed = True
    remote.sync([])
    assert old.closed and isinstance(inbox.get_nowait(), ClientGone)


async def test_a_client_that_left_with_nothing_in_flight_is_closed() -> None:
    remote, old = remote_with(card("k1", "east"), FakeLink())
    remote.sync([])
    assert old.closed and remote.get("c1") is None
