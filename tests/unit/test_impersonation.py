"""Impersonation headers: what is checked, in which order, and who the request becomes."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from edgek.status import ApiError
from server.auth.attributes import Attributes
from server.auth.impersonation import impersonated
from server.storage.requestinfo import UserInfo

ADMIN = UserInfo("admin", ("system:masters", "system:authenticated"))


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def _run(
    *pairs: tuple[str, str], deny: str = ""
) -> tuple[UserInfo, list[tuple[str, str, str, str, str]]]:
    """The impersonated user and the checks made as (resource, subresource, group,
    namespace, name); ``deny`` names a resource whose check raises 403."""
    checks: list[tuple[str, str, str, str, str]] = []

    def authorize(attrs: Attributes) -> None:
        assert attrs.user is ADMIN and attrs.verb == "impersonate" and attrs.resource_request
        checks.append(
            (attrs.resource, attrs.subresource, attrs.api_group, attrs.namespace, attrs.name)
        )
        if attrs.resource == deny:
            raise ApiError(403, "Forbidden", "no")

    return impersonated(ADMIN, _headers(*pairs), authorize), checks


def test_no_headers_keep_the_requester() -> None:
    assert _run() == (ADMIN, [])


def test_user_gets_system_authenticated() -> None:
    user, checks = _run(("Impersonate-User", "bob"))
    assert user == UserInfo("bob", ("system:authenticated",))
    assert checks == [("users", "", "", "", "bob")]


def test_every_piece_is_checked_in_order() -> None:
    user, checks = _run(
        ("Impersonate-User", "bob"),
        ("Impersonate-Uid", "1234"),
        ("Impersonate-Group", "a"),
        ("Impersonate-Extra-Scopes", "view"),
        ("impersonate-extra-Scopes", "edit"),
        ("Impersonate-Extra-Example.com%2fKey", "v"),
        ("Impersonate-Group", "b"),
    )
    assert user == UserInfo(
        "bob",
        ("a", "b", "system:authenticated"),
        "1234",
        {"scopes": ("view", "edit"), "example.com/key": ("v",)},
    )
    auth = "authentication.k8s.io"
    assert checks == [
        ("users", "", "", "", "bob"),
        ("groups", "", "", "", "a"),
        ("groups", "", "", "", "b"),
        ("userextras", "scopes", auth, "", "view"),
        ("userextras", "scopes", auth, "", "edit"),
        ("userextras", "example.com/key", auth, "", "v"),
        ("uids", "", auth, "", "1234"),
    ]


def test_first_denial_stops() -> None:
    with pytest.raises(ApiError) as err:
        _run(("Impersonate-User", "bob"), ("Impersonate-Group", "a"), deny="groups")
    assert err.value.code == 403


def test_service_account_user_is_checked_in_its_namespace_with_its_groups() -> None:
    user, checks = _run(("Impersonate-User", "system:serviceaccount:ns1:robot"))
    assert checks == [("serviceaccounts", "", "", "ns1", "robot")]
    assert user.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:ns1",
        "system:authenticated",
    )
    # given groups replace the service-account groups
    user, _ = _run(
        ("Impersonate-User", "system:serviceaccount:ns1:robot"), ("Impersonate-Group", "g")
    )
    assert user.groups == ("g", "system:authenticated")


@pytest.mark.parametrize(
    "name",
    ["system:serviceaccount:ns1", "system:serviceaccount:a:b:c", "system:serviceaccount:NS:x"],
)
def test_malformed_service_account_names_are_plain_users(name: str) -> None:
    _, checks = _run(("Impersonate-User", name))
    assert checks == [("users", "", "", "", name)]


def test_all_users_groups() -> None:
    user, _ = _run(("Impersonate-User", "bob"), ("Impersonate-Group", "system:unauthenticated"))
    assert user.groups == ("system:unauthenticated",)
    user, _ = _run(("Impersonate-User", "system:anonymous"))
    assert user.groups == ("system:unauthenticated",)


@pytest.mark.parametrize(
    "header", ["Impersonate-Group", "Impersonate-Uid", "Impersonate-Extra-Scopes"]
)
def test_other_pieces_need_a_user(header: str) -> None:
    with pytest.raises(ApiError) as err:
        _run((header, "x"))
    assert err.value.code == 400


def test_malformed_escapes_in_extra_keys_are_kept() -> None:
    user, _ = _run(("Impersonate-User", "bob"), ("Impersonate-Extra-a%zz", "v"))
    assert user.extra == {"a%zz": ("v",)}


def test_bytes_that_are_not_utf8_become_replacement_characters() -> None:
    # aiohttp keeps undecodable header bytes as surrogate escapes
    user, _ = _run(("Impersonate-User", b"\xffok".decode("utf-8", "surrogateescape")))
    assert user.name == "\ufffdok"
