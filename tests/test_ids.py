"""arenahub.ids: random ids like uuid4().hex, from a buffer of the OS's random bits."""

from __future__ import annotations

import os
import re

from arenahub import ids


def test_ids_are_32_hex_digits_and_distinct_across_refills() -> None:
    made = [ids.new_id() for _ in range(ids.BATCH * 3 + 7)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
    assert len(set(made)) == len(made)


def test_a_forked_child_does_not_repeat_the_parents_next_ids() -> None:
    ids.new_id()  # the parent holds a buffer with ids still to hand out
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its next ids and leave at once
        os.close(read)
        os.write(write, " ".join(ids.new_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    parent = [ids.new_id() for _ in range(4)]
    assert len(child) == 4
    assert not set(child) & set(parent)
