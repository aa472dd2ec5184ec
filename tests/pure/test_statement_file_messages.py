"""models/statement_file_messages.py lists every parser message template, word for word, as a
translatable literal (read with ast: no Odoo needed)."""
import ast
from pathlib import Path

from services.statement_files.model import MESSAGES

SOURCE = Path(__file__).resolve().parents[2] / "models" / "statement_file_messages.py"


def _translatable_messages():
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "MESSAGES" for t in node.targets):
            found = {}
            for key, value in zip(node.value.keys, node.value.values):
                assert isinstance(value, ast.Call) and value.func.id == "_lt", key.value
                assert len(value.args) == 1 and isinstance(value.args[0], ast.Constant)
                found[key.value] = value.args[0].value
            return found
    raise AssertionError("no MESSAGES dict in %s" % SOURCE)


def test_every_template_is_a_translatable_literal():
    assert _translatable_messages() == MESSAGES
