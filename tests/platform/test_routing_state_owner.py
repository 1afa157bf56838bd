"""Each connected client's routing state has one owner (issue 13): outside the session's own methods, only
the dispatcher (dispatch.py) writes it. Read from the source with ast, so a new writer elsewhere fails here."""

import ast
from pathlib import Path

ROUTING_STATE = {"admin_draining", "self_draining", "drain_reason", "priority", "weight", "rpm", "limits",
                 "max_concurrent", "moving", "maintenance"}
OWNER = Path("arenahub/platform/dispatch.py")
ROOT = Path(__file__).parents[2]


def writers() -> list[str]:
    found = []
    for path in sorted((ROOT / "arenahub").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if (isinstance(element, ast.Attribute) and element.attr in ROUTING_STATE
                            and not (isinstance(element.value, ast.Name) and element.value.id == "self")):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{element.attr}")
    return found


def test_only_the_dispatcher_changes_a_connected_clients_routing_state() -> None:
    outside = [w for w in writers() if not w.startswith(f"{OWNER}:") and not w.startswith("arenahub/client/")]
    assert outside == []


def test_the_check_sees_the_dispatchers_own_writes() -> None:
    assert any(w.startswith(f"{OWNER}:") and w.endswith(".admin_draining") for w in writers())
