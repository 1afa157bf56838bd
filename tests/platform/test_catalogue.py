"""The operator's model catalogue (catalogue.py), and how a connected client's models follow it."""

from arenahub.platform.catalogue import PENDING_SHOWN, Listing, ModelCatalogue, Offerer, describe, nameable


def test_off_every_offered_model_is_served():
    catalogue = ModelCatalogue()
    assert catalogue.served("c1", {"gpt-4o", "m"}) == {"gpt-4o", "m"}
    assert catalogue.pending("c1", {"gpt-4o"}) == [] and catalogue.offered_to_consumers("anything")


def test_on_a_client_serves_only_listed_models_it_may_serve_and_the_rest_waits():
    catalogue = ModelCatalogue(enabled=True, listings={
        "open": Listing("open", any_client=True, refused=frozenset({"bad"})),
        "gpt-4o": Listing("gpt-4o", approved=frozenset({"c2"})),
    }, refused=frozenset({("c1", "junk")}))
    offered = {"open", "gpt-4o", "new-model", "junk"}
    assert catalogue.served("c1", offered) == {"open"}
    assert catalogue.pending("c1", offered) == ["gpt-4o", "new-model"]  # junk was refused: not asked again
    assert catalogue.served("c2", offered) == {"open", "gpt-4o"}
    assert catalogue.served("bad", offered) == set() and "open" not in catalogue.pending("bad", offered)
    assert catalogue.offered_to_consumers("gpt-4o") and not catalogue.offered_to_consumers("new-model")


def test_a_name_the_operator_cannot_write_is_never_pending():
    catalogue = ModelCatalogue(enabled=True)
    offered = {"ok/model:1.5", "", "x" * 201, "bell\x07", "c1\x85", "\u2028 spaces are fine "}
    assert catalogue.pending("c1", offered) == ["ok/model:1.5", "\u2028 spaces are fine "]
    assert catalogue.served("c1", offered) == set()
    assert nameable("x" * 200) and not nameable("x" * 201) and not nameable("") and not nameable("a\nb")


def test_describe_is_what_the_operator_reads():
    catalogue = ModelCatalogue(enabled=False, listings={
        "open": Listing("open", any_client=True, refused=frozenset({"c2"})),
        "gpt-4o": Listing("gpt-4o", approved=frozenset({"c1"})),
    }, refused=frozenset({("c2", "junk"), ("gone", "old")}))
    clients = [Offerer("c1", "alice", {"gpt-4o", "open", "new"}, serving={"gpt-4o", "open", "new"}),
               Offerer("c2", "bob", {"gpt-4o", "open", "junk"}),  # not connected
               Offerer("c3", "carol", set(), serving=set())]
    view = describe(catalogue, clients)
    assert view["enabled"] is False
    assert view["models"] == [
        {"model": "gpt-4o", "any_client": False, "approved": ["c1"], "refused": [], "serving": ["c1"]},
        {"model": "open", "any_client": True, "approved": [], "refused": ["c2"], "serving": ["c1"]}]
    # Off, nothing waits; the view shows what would wait once it is on.
    assert view["pending"] == [{"client_id": "c2", "client_name": "bob", "model": "gpt-4o"},
                               {"client_id": "c1", "client_name": "alice", "model": "new"}]
    assert view["pending_total"] == 2
    assert view["refused"] == [{"client_id": "c2", "client_name": "bob", "model": "junk"},
                               {"client_id": "gone", "client_name": None, "model": "old"}]
    assert view["client_names"] == {"c1": "alice", "c2": "bob"}
    only = describe(catalogue, clients, only="c1")
    assert [p["model"] for p in only["pending"]] == ["new"] and only["refused"] == []
    assert only["models"] == view["models"]


def test_describe_bounds_the_offers_it_lists():
    clients = [Offerer(f"c{i}", f"client {i}", {f"m{j}" for j in range(600)}) for i in range(2)]
    view = describe(ModelCatalogue(enabled=True), clients)
    assert view["pending_total"] == 1_200 and len(view["pending"]) == PENDING_SHOWN
