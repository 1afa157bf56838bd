"""The platform's own count of an image answer (image_answer.py): pure, no I/O."""

from __future__ import annotations

import pytest

from arenahub.platform.image_answer import ImageAnswerTooLarge, ImageCollector


def test_pieces_join_per_index_and_images_come_in_index_order():
    c = ImageCollector(3, "b64_json")
    c.take([[{"index": 2, "b64_json": "CCCC"}], [{"index": 0, "b64_json": "AAAA", "revised_prompt": "a"}],
            [{"index": 0, "b64_json": "AA=="}]])
    assert c.data() == [{"b64_json": "AAAAAA==", "revised_prompt": "a"}, {"b64_json": "CCCC"}]


@pytest.mark.parametrize("events", [
    [[{"index": 0, "b64_json": "AA=="}], [{"index": 0, "b64_json": "AAAA"}]],  # something after the padding
    [[{"index": 0, "b64_json": "AA\nA"}]],  # not the base64 alphabet
    [[{"index": 0, "b64_json": "AAA"}]],  # not whole base64
    [[{"index": True, "b64_json": "AAAA"}], [{"index": "0", "b64_json": "AAAA"}], [{"index": 1, "b64_json": "AAAA"}]],
    [["junk", 5, None], "junk", [{"index": 0, "url": "https://x.example/a.png"}]],  # the other format
])
def test_what_is_not_a_whole_image_of_the_request_is_left_out(events):
    c = ImageCollector(1, "b64_json")
    c.take(events)
    assert c.data() == []


def test_urls_are_http_and_one_per_image():
    c = ImageCollector(4, "url")
    c.take([[{"index": 0, "url": "HTTPS://x.example/a.png"}, {"index": 1, "url": "javascript:alert(1)"},
             {"index": 2, "url": "https://x.example/c.png"}, {"index": 2, "url": "https://x.example/d.png"},
             {"index": 3, "url": "https://x.example/" + "e" * 9000}]])
    assert c.data() == [{"url": "HTTPS://x.example/a.png"}]


def test_an_image_or_an_answer_past_its_bound_is_refused():
    one = ImageCollector(2, "b64_json", max_image_chars=8, max_answer_chars=12)
    one.take([[{"index": 0, "b64_json": "AAAA"}]])
    with pytest.raises(ImageAnswerTooLarge):
        one.take([[{"index": 0, "b64_json": "AAAAAAAA"}]])
    both = ImageCollector(2, "b64_json", max_image_chars=8, max_answer_chars=12)
    both.take([[{"index": 0, "b64_json": "AAAAAAAA"}]])
    with pytest.raises(ImageAnswerTooLarge) as cut:
        both.take([[{"index": 1, "b64_json": "AAAAAAAA"}]])
    assert cut.value.code == "image_answer_too_large" and cut.value.status == 502
