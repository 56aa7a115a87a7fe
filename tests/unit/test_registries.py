"""Image names, k3s registries.yaml → the agent Podman's registries.conf, the pull-secret
keyring's matching, and the pull policy of ImagePuller against a fake libpod."""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.imageref import InvalidReference, parse
from agent.podman.client import PodmanError
from agent.podman.service import write_certs_d
from agent.pull import ImagePuller, ImagePullError, loopback_registry
from agent.pullsecrets import Keyring, keyring, matches
from agent.registries import Credentials, Registries, RegistriesError, load
from agent.registries import parse as parse_registries


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("user/app", "docker.io/user/app:latest"),
        ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("localhost/app", "localhost/app:latest"),
        ("127.0.0.1:5000/a/b:v2", "127.0.0.1:5000/a/b:v2"),
        ("[::1]:5000/a", "[::1]:5000/a:latest"),
        ("registry:5000/app", "registry:5000/app:latest"),
        ("quay.io/x/y@sha256:" + "a" * 64, "quay.io/x/y@sha256:" + "a" * 64),
        ("quay.io/x/y:t@sha256:" + "a" * 64, "quay.io/x/y:t@sha256:" + "a" * 64),
    ],
)
def test_image_names_are_normalized_like_docker(image: str, expected: str) -> None:
    assert str(parse(image)) == expected


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("", "at least one component"),
        ("Busybox", "must be lowercase"),
        ("docker.io/Library/busybox", "must be lowercase"),
        ("busybox:", "invalid reference format"),
        ("bad image", "invalid reference format"),
        ("a/b@sha256:12", "invalid reference format"),
    ],
)
def test_invalid_image_names(image: str, why: str) -> None:
    with pytest.raises(InvalidReference, match=why):
        parse(image)


REGISTRIES_YAML = {
    "mirrors": {
        "docker.io": {
            "endpoint": ["http://10.0.0.5:5000", "https://mirror.example.com/v2"],
            "rewrite": {"^library/(.*)": "hub/$1", "^(foo|bar)/(.*)": "x/$2"},
        },
        "https://registry.internal:5443/": {"endpoint": ["registry.internal:5443"]},
        "*": {"endpoint": ["http://10.0.0.5:5000"]},
    },
    "configs": {
        "mirror.example.com": {
            "auth": {"username": "u", "password": "p"},
            "tls": {"insecure_skip_verify": True, "ca_file": "/etc/ca.pem"},
        },
        "registry.internal:5443": {"auth": {"auth": base64.b64encode(b"ci:s3:cret").decode()}},
        "10.0.0.5:5000": {"auth": {"identitytoken": "tok"}},
    },
}


def test_registries_yaml_becomes_podman_registries_conf() -> None:
    reg = parse_registries(REGISTRIES_YAML)
    conf = tomllib.loads(reg.registries_conf())
    assert conf["unqualified-search-registries"] == ["docker.io"]
    by_prefix = {r["prefix"]: r for r in conf["registry"]}
    assert set(by_prefix) == {
        "docker.io",
        "docker.io/library",
        "registry.internal:5443",
        "mirror.example.com",
    }
    hub = by_prefix["docker.io"]
    assert (hub["location"], hub["insecure"]) == ("docker.io", False)
    # endpoints in order; http:// and insecure_skip_verify make a mirror insecure
    assert [(m["location"], m["insecure"]) for m in hub["mirror"]] == [
        ("10.0.0.5:5000", True),
        ("mirror.example.com", True),
    ]
    # the prefix rewrite: docker.io/library/x is found at <mirror>/hub/x
    assert [m["location"] for m in by_prefix["docker.io/library"]["mirror"]] == [
        "10.0.0.5:5000/hub",
        "mirror.example.com/hub",
    ]
    assert by_prefix["mirror.example.com"]["insecure"] is True
    assert by_prefix["registry.internal:5443"]["mirror"] == [
        {"location": "registry.internal:5443", "insecure": False}
    ]
    assert reg.auths == {
        "mirror.example.com": Credentials("u", "p"),
        "registry.internal:5443": Credentials("ci", "s3:cret"),
        "10.0.0.5:5000": Credentials("", "", "tok"),
    }
    assert reg.tls_files == {"mirror.example.com": {"ca.crt": Path("/etc/ca.pem")}}
    assert len(reg.unsupported) == 2  # the regex rewrite and "*"
    assert any("(foo|bar)" in u for u in reg.unsupported)


def test_tls_files_become_a_certs_d_directory(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client-key.pem"):
        (tmp_path / name).write_text(name)
    reg = parse_registries(
        {
            "configs": {
                "reg:5000": {
                    "tls": {
                        "ca_file": str(tmp_path / "ca.pem"),
                        "cert_file": str(tmp_path / "client.pem"),
                        "key_file": str(tmp_path / "client-key.pem"),
                    }
                },
                "other": {"tls": {"ca_file": str(tmp_path / "missing.pem")}},
            }
        }
    )
    certs_d = tmp_path / "certs.d"
    (certs_d / "stale:1").mkdir(parents=True)
    write_certs_d(certs_d, reg)
    assert sorted(p.name for p in certs_d.iterdir()) == ["other", "reg:5000"]
    files = {p.name: p.read_text() for p in (certs_d / "reg:5000").iterdir()}
    assert files == {
        "ca.crt": "ca.pem",
        "client.cert": "client.pem",
        "client.key": "client-key.pem",
    }
    assert (certs_d / "reg:5000" / "client.key").stat().st_mode & 0o777 == 0o600
    assert list((certs_d / "other").iterdir()) == []  # unreadable: logged, left out


def test_no_registries_yaml_means_no_mirrors(tmp_path: Path) -> None:
    reg = load(tmp_path / "absent.yaml")
    assert reg == Registries()
    conf = tomllib.loads(reg.registries_conf())
    assert "registry" not in conf


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("mirrors: [a]", "mirrors must be a mapping"),
        ("mirrors: {docker.io: {endpoint: x}}", "endpoint must be a list"),
        ("mirrors: {docker.io: {endpoint: ['ftp://x']}}", "not an http"),
        ("configs: {r: {auth: {auth: '!!'}}}", "not base64"),
        ("configs: {r: {tls: {cert_file: /c.pem}}}", "both cert_file and key_file"),
        ("mirrors: {a: [", "registries.yaml"),
    ],
)
def test_bad_registries_yaml(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text(text)
    with pytest.raises(RegistriesError, match=why):
        load(path)


@pytest.mark.parametrize(
    ("key", "repository", "expected"),
    [
        ("registry.example.com", "registry.example.com/app", True),
        ("https://registry.example.com/v1/", "registry.example.com/app", True),
        ("registry.example.com:5000", "registry.example.com/app", False),
        ("registry.example.com", "registry.example.com:5000/app", False),
        ("registry.example.com/team", "registry.example.com/team/app", True),
        ("registry.example.com/team", "registry.example.com/other/app", False),
        ("*.example.com", "registry.example.com/app", True),
        ("*.example.com", "example.com/app", False),
        ("*.example.com", "a.b.example.com/app", False),
        ("docker.io", "docker.io/library/busybox", True),
    ],
)
def test_keyring_matching(key: str, repository: str, expected: bool) -> None:
    assert matches(key, repository) is expected


def _secret(kind: str, key: str, doc: Any) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(doc).encode()).decode()
    return {"type": kind, "data": {key: data}}


def test_keyring_from_secrets_most_specific_first() -> None:
    ring = keyring(
        [
            _secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                {
                    "auths": {
                        "reg.example.com": {"username": "wide", "password": "1"},
                        "reg.example.com/team": {
                            "auth": base64.b64encode(b"narrow:2").decode(),
                            "username": "ignored",
                        },
                    }
                },
            ),
            _secret("kubernetes.io/dockercfg", ".dockercfg", {"https://index.docker.io/v1/": {}}),
            {"type": "Opaque", "data": {".dockerconfigjson": "e30="}},
        ]
    )
    assert ring.lookup("reg.example.com/team/app") == [
        Credentials("narrow", "2"),
        Credentials("wide", "1"),
    ]
    assert ring.lookup("reg.example.com/other") == [Credentials("wide", "1")]
    assert ring.lookup("docker.io/library/busybox") == [Credentials("", "")]
    assert ring.lookup("quay.io/x") == []
    assert Keyring().lookup("docker.io/library/busybox") == []


class FakePodman:
    """The image calls of PodmanClient the puller makes, over a dict of local images."""

    def __init__(self, local: dict[str, str], remote: dict[str, str]) -> None:
        self.local, self.remote = local, remote
        self.pulls: list[tuple[str, dict[str, Any] | None, bool | None]] = []

    async def image_inspect(self, name: str) -> dict[str, Any]:
        if name not in self.local:
            raise PodmanError(404, f"{name}: image not known")
        return {"Id": self.local[name]}

    async def image_pull(
        self, reference: str, auth: str | None = None, tls_verify: bool | None = None
    ) -> list[str]:
        hosts = json.loads(base64.urlsafe_b64decode(auth)) if auth else None
        self.pulls.append((reference, hosts, tls_verify))
        if reference not in self.remote:
            raise PodmanError(500, f"initializing source docker://{reference}: unauthorized")
        self.local[reference] = self.remote[reference]
        return [self.remote[reference]]


class Secrets:
    def __init__(self, secrets: dict[str, dict[str, Any]]) -> None:
        self.secrets = secrets

    async def get(self, resource: str, namespace: str, name: str) -> dict | None:
        assert resource == "secrets"
        return self.secrets.get(f"{namespace}/{name}")


def _pod(secrets: list[str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "p"},
        "spec": {"imagePullSecrets": [{"name": s} for s in secrets or []]},
    }


async def _ensure(
    podman: FakePodman, container: dict[str, Any], pod: dict[str, Any] | None = None, **kw: Any
) -> tuple[str, list[tuple[str, str, str]]]:
    events: list[tuple[str, str, str]] = []
    puller = ImagePuller(podman, kw.get("registries", Registries()), Secrets(kw.get("secrets", {})))
    image_id = await puller.ensure(pod or _pod(), container, lambda *e: events.append(e))
    return image_id, events


async def test_if_not_present_uses_the_local_image_and_always_pulls() -> None:
    podman = FakePodman({"docker.io/library/app:1": "id1"}, {"docker.io/library/app:1": "id2"})
    image_id, events = await _ensure(podman, {"image": "app:1"})
    assert (image_id, podman.pulls) == ("id1", [])
    assert events == [("Normal", "Pulled", 'Container image "app:1" already present on machine')]
    image_id, events = await _ensure(podman, {"image": "app:1", "imagePullPolicy": "Always"})
    assert image_id == "id2"
    assert [e[1] for e in events] == ["Pulling", "Pulled"]
    assert podman.pulls == [("docker.io/library/app:1", None, None)]


async def test_latest_defaults_to_always_and_never_does_not_pull() -> None:
    podman = FakePodman({"docker.io/library/app:latest": "old"}, {})
    with pytest.raises(ImagePullError) as failed:
        await _ensure(podman, {"image": "app"})
    assert failed.value.reason == "ErrImagePull"
    assert failed.value.message.startswith('Failed to pull image "app": initializing source')
    with pytest.raises(ImagePullError) as never:
        await _ensure(podman, {"image": "other:1", "imagePullPolicy": "Never"})
    assert (never.value.reason, never.value.message) == (
        "ErrImageNeverPull",
        'Container image "other:1" is not present with pull policy of Never',
    )
    assert await _ensure(podman, {"image": "app", "imagePullPolicy": "Never"}) == (
        "old",
        [("Normal", "Pulled", 'Container image "app" already present on machine')],
    )


@pytest.mark.parametrize(
    ("domain", "loopback"),
    [("127.0.0.1:5000", True), ("localhost", True), ("[::1]:5000", True), ("10.0.0.1:5000", False)],
)
def test_loopback_registries(domain: str, loopback: bool) -> None:
    assert loopback_registry(domain) is loopback


async def test_invalid_image_name() -> None:
    with pytest.raises(ImagePullError) as bad:
        await _ensure(FakePodman({}, {}), {"image": "Not/Valid"})
    assert bad.value.reason == "InvalidImageName"
    assert "couldn't parse image name" in bad.value.message


async def test_pull_secrets_and_registries_yaml_credentials_are_sent_per_host() -> None:
    ref = "127.0.0.1:5000/team/app:1"
    podman = FakePodman({}, {ref: "idp"})
    secret = _secret(
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        {"auths": {"127.0.0.1:5000": {"username": "u", "password": "p"}}},
    )
    registries = parse_registries({"configs": {"mirror:443": {"auth": {"username": "m"}}}})
    image_id, events = await _ensure(
        podman,
        {"image": ref},
        _pod(["missing", "creds"]),
        secrets={"ns/creds": secret},
        registries=registries,
    )
    assert image_id == "idp"
    assert podman.pulls == [
        (
            ref,
            {
                "127.0.0.1:5000": {"username": "u", "password": "p"},
                "mirror:443": {"username": "m", "password": ""},
            },
            False,  # a loopback registry may be plain HTTP
        )
    ]
    assert (
        "Warning",
        "FailedToRetrieveImagePullSecret",
        "Unable to retrieve some image pull secrets (ns/missing); attempting to pull the image "
        "may not succeed.",
    ) in events


def test_agent_private_registry_setting() -> None:
    """``--private-registry`` (or the config file key) points elsewhere than the default."""
    from edgek.cmd.agent import agent_config

    base = {"server": "https://server:6443", "token": "K10abc::server:secret"}
    assert agent_config(base).private_registry == Path("/etc/edgek/registries.yaml")
    other = agent_config({**base, "private-registry": "/opt/reg.yaml"})
    assert other.private_registry == Path("/opt/reg.yaml")
