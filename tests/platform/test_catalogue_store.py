"""The model catalogue in the database (storage/catalogue_store.py), on SQLite and PostgreSQL: listing,
decisions, what a change does to the version the platform polls, the clients' stored offers, and a
deleted client's decisions going with it."""

from arenahub.platform.catalogue import Listing
from arenahub.platform.storage import accounts, catalogue_store

LONG = "vendor/" + "m" * 186 + ":v1.5"  # 200 characters, with '/', ':' and '.'
WIDE = "\U0001F600" * 200  # 200 characters, 800 bytes


async def test_list_change_and_unlist(engine):
    assert await catalogue_store.load(engine) == ({}, frozenset())
    assert await catalogue_store.list_model(engine, LONG, any_client=False) is True
    assert await catalogue_store.list_model(engine, "open", any_client=True) is True
    assert await catalogue_store.list_model(engine, LONG, any_client=True) is False  # changed, not new
    listings, refused = await catalogue_store.load(engine)
    assert listings == {LONG: Listing(LONG, any_client=True), "open": Listing("open", any_client=True)}
    assert refused == frozenset()
    assert await catalogue_store.unlist_model(engine, "open") is True
    assert await catalogue_store.unlist_model(engine, "open") is False
    assert await catalogue_store.list_model(engine, WIDE, any_client=False) is True
    assert set((await catalogue_store.load(engine))[0]) == {LONG, WIDE}


async def test_decisions_approve_refuse_and_forget(engine):
    alice, _ = await accounts.create_client(engine, name="alice")
    bob, _ = await accounts.create_client(engine, name="bob")
    await catalogue_store.decide(engine, "gpt-4o", alice, approved=True)  # lists the model too
    await catalogue_store.decide(engine, "gpt-4o", bob, approved=False)
    await catalogue_store.decide(engine, "junk", bob, approved=False)  # a refusal of a model not listed
    listings, refused = await catalogue_store.load(engine)
    assert listings == {"gpt-4o": Listing("gpt-4o", approved=frozenset({alice}), refused=frozenset({bob}))}
    assert refused == frozenset({(bob, "junk")})

    await catalogue_store.decide(engine, "gpt-4o", bob, approved=True)  # a change of mind
    assert (await catalogue_store.load(engine))[0]["gpt-4o"].approved == {alice, bob}
    assert await catalogue_store.forget(engine, "gpt-4o", alice) is True
    assert await catalogue_store.forget(engine, "gpt-4o", alice) is False
    assert (await catalogue_store.load(engine))[0]["gpt-4o"] == Listing("gpt-4o", approved=frozenset({bob}))

    # Unlisting takes the approvals with it; a refusal stays, listed or not.
    await catalogue_store.decide(engine, "gpt-4o", alice, approved=False)
    assert await catalogue_store.unlist_model(engine, "gpt-4o") is True
    assert await catalogue_store.load(engine) == ({}, frozenset({(bob, "junk"), (alice, "gpt-4o")}))


async def test_every_change_changes_the_version(engine):
    client, _ = await accounts.create_client(engine, name="c")
    seen = [await catalogue_store.version(engine)]

    async def changed() -> None:  # what the platform compares: the version it read last
        now = await catalogue_store.version(engine)
        assert now != seen[-1]
        seen.append(now)

    await catalogue_store.list_model(engine, "m", any_client=False)
    await changed()
    await catalogue_store.list_model(engine, "m", any_client=True)
    await changed()
    await catalogue_store.decide(engine, "m", client, approved=True)
    await changed()
    await catalogue_store.decide(engine, "m", client, approved=False)
    await changed()
    await catalogue_store.forget(engine, "m", client)
    await changed()
    await catalogue_store.unlist_model(engine, "m")
    await changed()


async def test_offerers_are_the_stored_claims(engine):
    alice, _ = await accounts.create_client(engine, name="alice")
    bob, _ = await accounts.create_client(engine, name="bob")
    await accounts.record_client_hello(engine, alice, ["gpt-4o", "m1"], "1.0")
    found = await catalogue_store.offerers(engine)
    assert [(o.client_id, o.name, sorted(o.offered), o.serving) for o in found] == [
        (alice, "alice", ["gpt-4o", "m1"], None), (bob, "bob", [], None)]
    assert [o.client_id for o in await catalogue_store.offerers(engine, bob)] == [bob]


async def test_deleting_a_client_deletes_its_decisions(engine):
    alice, _ = await accounts.create_client(engine, name="alice")
    bob, _ = await accounts.create_client(engine, name="bob")
    for client in (alice, bob):
        await catalogue_store.decide(engine, "gpt-4o", client, approved=True)
        await catalogue_store.decide(engine, "junk", client, approved=False)
    assert await accounts.delete_client(engine, alice) is True
    listings, refused = await catalogue_store.load(engine)
    assert listings == {"gpt-4o": Listing("gpt-4o", approved=frozenset({bob}))}  # the listing stays
    assert refused == frozenset({(bob, "junk")})
