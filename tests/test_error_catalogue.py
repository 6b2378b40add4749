"""The error catalogue (`voicechat.error_codes.ErrorCode`) holds every code the server raises, and
docs/errors.md describes every code it holds.

The server's source is read as an AST, so a raise on a path no other test reaches counts too. A
code reaches the wire through one of these, and each must be a catalogue member (written
`ErrorCode.X`, never a bare string, so the catalogue is the one place a code is spelled):

- `code=` passed to any call (`NotFound("…", code=ErrorCode.USER_NOT_FOUND)`);
- `code = …` in a class body (the default of a `VoicechatError` subclass);
- `"code": …` in a dict literal (a JSON-RPC `data`, a control-channel reply);
- the code argument of `error_body`, `error_response`, `reply_error` and `NodeError`.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

from tests.utils.auth import ApiUser
from voicechat import errors
from voicechat.error_codes import ErrorCode, RpcErrorCode
from voicechat.errors import BadRequest, VoicechatError
from voicechat.gateway.protocol import RpcError, error_frame

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "python" / "voicechat"
DOCS = ROOT / "docs" / "errors.md"

#: Functions whose first (or, for `error_response`, second) positional argument is a code.
CODE_ARGUMENT = {"error_body": 0, "error_response": 1, "reply_error": 1, "NodeError": 0}


def _server_files() -> list[Path]:
    # The SDK raises nothing with a code of its own: it reads the server's.
    return sorted(p for p in SERVER.rglob("*.py") if "sdk" not in p.relative_to(SERVER).parts)


def _called_name(call: ast.Call) -> str:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return ""


def code_expressions(tree: ast.AST) -> Iterator[ast.expr]:
    """Every expression in the tree that puts an error code on the wire."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield from (kw.value for kw in node.keywords if kw.arg == "code")
            position = CODE_ARGUMENT.get(_called_name(node))
            if position is not None and len(node.args) > position:
                yield node.args[position]
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                targets = (
                    statement.targets
                    if isinstance(statement, ast.Assign)
                    else [statement.target]
                    if isinstance(statement, ast.AnnAssign) and statement.value is not None
                    else []
                )
                if any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                    assert isinstance(statement, ast.Assign | ast.AnnAssign)
                    assert statement.value is not None
                    yield statement.value
        elif isinstance(node, ast.Dict):
            yield from (
                value
                for key, value in zip(node.keys, node.values, strict=True)
                if isinstance(key, ast.Constant) and key.value == "code"
            )


def _describe(path: Path, node: ast.expr) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"


def test_every_code_the_server_sends_is_a_catalogue_member() -> None:
    bare: list[str] = []
    unknown: list[str] = []
    seen: set[str] = set()
    for path in _server_files():
        for node in code_expressions(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                bare.append(_describe(path, node))
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "ErrorCode"
            ):
                if node.attr in ErrorCode.__members__:
                    seen.add(node.attr)
                else:
                    unknown.append(_describe(path, node))
    assert not bare, "write these codes as ErrorCode members:\n" + "\n".join(bare)
    assert not unknown, "codes missing from voicechat.error_codes:\n" + "\n".join(unknown)
    # The scan itself must see the raise sites (a scan that matched nothing would pass).
    assert {"DM_IMMUTABLE", "USER_NOT_FOUND", "VOICE_UNAVAILABLE", "NODE_FULL"} <= seen


def _subclasses(cls: type[VoicechatError]) -> Iterator[type[VoicechatError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_class_defaults_to_a_catalogue_member() -> None:
    import voicechat.voice.plane  # noqa: F401  (defines VoiceUnavailable)

    classes = [VoicechatError, *_subclasses(VoicechatError)]
    assert errors.NotFound in classes
    for cls in classes:
        assert isinstance(cls.code, ErrorCode), cls


def _documented_codes() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in DOCS.read_text().splitlines():
        match = re.fullmatch(r"\| `([a-z0-9_]+)` \| ([^|]+) \| (.+) \|", line.strip())
        if match:
            code, status, when = match.groups()
            assert code not in rows, f"docs/errors.md describes {code} twice"
            assert status.strip(), f"docs/errors.md: {code} has no status"
            assert when.strip(), f"docs/errors.md: {code} says not when"
            rows[code] = when
    return rows


def test_docs_describe_exactly_the_catalogue() -> None:
    documented = set(_documented_codes())
    catalogue = {code.value for code in ErrorCode}
    assert not catalogue - documented, f"not described in docs/errors.md: {catalogue - documented}"
    assert not documented - catalogue, f"not in the catalogue: {documented - catalogue}"


def test_codes_are_snake_case_and_unique() -> None:
    values = [code.value for code in ErrorCode]
    assert len(values) == len(set(values))
    for code in ErrorCode:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code.value), code
        assert code.name == code.value.upper(), code


def test_members_are_their_wire_text() -> None:
    # What keeps the wire format unchanged: a member serialises and compares as its string.
    assert ErrorCode.DM_IMMUTABLE == "dm_immutable"
    assert json.dumps({"code": ErrorCode.DM_IMMUTABLE}) == '{"code": "dm_immutable"}'
    assert f"{ErrorCode.DM_IMMUTABLE}" == "dm_immutable"
    assert {ErrorCode.DM_IMMUTABLE: 1}["dm_immutable"] == 1
    assert str(RpcErrorCode.FORBIDDEN) == "-32003"


def test_the_catalogue_loads_nothing_of_the_server() -> None:
    tree = ast.parse((SERVER / "error_codes.py").read_text())
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert not [name for name in imported if name.startswith("voicechat")], imported


async def test_http_answers_carry_the_code_text(alice: ApiUser) -> None:
    # A class default, and a code passed at a raise site.
    assert (await alice.get("/no/such/route")).json()["error"]["code"] == "not_found"
    refused = await alice.post("/dms", json={"user_ids": [alice.id]})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_dm"


def test_gateway_answers_carry_the_code_text() -> None:
    error = RpcError.from_domain(BadRequest("DMs cannot be edited", code=ErrorCode.DM_IMMUTABLE))
    frame = json.loads(error_frame(7, error))
    assert frame["error"]["code"] == -32000
    assert frame["error"]["data"] == {"code": "dm_immutable"}
