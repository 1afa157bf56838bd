"""The userscript uploads images the way the arena.ai page does: the page's own server actions (found in
its scripts, again after a new build of the site), a PUT to the upload URL, then a signed URL."""

from __future__ import annotations

import base64

from tests.browser.fake_bridge import bridge, model, tab  # noqa: F401 (fixtures)

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001a5f645400000000049454e44ae426082")).decode()


def image(name: str = "dot.png") -> dict[str, str]:
    return {"name": name, "content_type": "image/png", "data_url": f"data:image/png;base64,{PNG}"}


def test_images_are_uploaded_the_way_the_page_does_then_attached(tab, lmarena_sim):
    items = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim, "claude-opus-4-1"), content="what is it",
                               attachments=[image("a.png"), image("b.png")]))
    assert items[-1]["type"] == "done", items[-1]
    kinds = [(c["kind"], c.get("action")) for c in lmarena_sim.requests()]
    assert kinds.count(("action", "generateUploadUrl")) == 2 and kinds.count(("action", "getSignedUrl")) == 2
    assert sum(1 for kind, _ in kinds if kind == "storage") >= 2
    (call,) = lmarena_sim.requests("create")
    files = call["json"]["userMessage"]["experimental_attachments"]
    assert [(f["name"], f["contentType"]) for f in files] == [("a.png", "image/png"), ("b.png", "image/png")]
    assert all("/__storage/" in f["url"] for f in files) and call["status"] == 200


def test_a_new_build_of_the_site_is_found_again(tab, lmarena_sim):
    task = {"call": "create", "model_a_id": model(lmarena_sim, "claude-opus-4-1"), "content": "x",
            "attachments": [image()]}
    assert tab.answer(tab.run(**task))[-1]["type"] == "done"
    lmarena_sim.control("build", {"rotate": True})
    items = tab.answer(tab.run(**task))
    assert items[-1]["type"] == "done", items[-1]
    statuses = [c["status"] for c in lmarena_sim.requests("action")]
    assert 404 in statuses, "the cached action id was stale, then found again"


def test_upload_actions_that_cannot_be_found_are_a_named_failure(tab, lmarena_sim):
    lmarena_sim.control("build", {"actions": "missing"})
    items = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="x", attachments=[image()]))
    failed = items[-1]
    assert failed["type"] == "failed" and failed["stage"] == "upload"
    assert "generateUploadUrl" in failed["message"]
    assert lmarena_sim.requests("create") == []
    facts = tab.ask("diagnose", "diagnosis")["facts"]
    assert facts["upload_actions"] is False and "generateUploadUrl" in facts["upload_problem"]


def test_an_image_too_large_for_the_storage_is_reported_with_its_status(tab, lmarena_sim):
    big = base64.b64encode(b"\x89PNG" + b"0" * (6 * 1024 * 1024)).decode()
    attachment = {"name": "big.png", "content_type": "image/png", "data_url": f"data:image/png;base64,{big}"}
    items = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="x", attachments=[attachment]))
    failed = items[-1]
    assert failed["stage"] == "upload" and failed["status"] == 413 and "EntityTooLarge" in failed["body"]
