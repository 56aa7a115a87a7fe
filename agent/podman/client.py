"""An async client for Podman's libpod REST API over its unix socket (aiohttp).

Every call is a coroutine; nothing blocks the event loop (see docs/AGENT.md, "Podman
client", for why this and not podman-py). Specs (pods, containers) are the libpod
SpecGenerator JSON as plain dicts. Exec sessions take over the connection (HTTP upgrade),
so they use a raw asyncio unix connection instead of aiohttp.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from agent.podman.frames import STDOUT, read_frames

API = "/v4.0.0/libpod"
_BASE = "http://podman"  # the host part is ignored on a unix socket


class PodmanError(Exception):
    """A libpod call failed: the HTTP status and libpod's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"podman: {status}: {message}")
        self.status = status
        self.message = message


def _b64json(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def registry_auth_header(username: str, password: str, server: str = "") -> str:
    """The ``X-Registry-Auth`` value for a pull: URL-safe base64 of the credentials JSON."""
    return _b64json({"username": username, "password": password, "serveraddress": server})


def registries_auth_header(auths: Mapping[str, Mapping[str, str]]) -> str:
    """A multi-registry ``X-Registry-Auth`` value: URL-safe base64 of a JSON map from
    registry host to credentials (``username``, ``password``, ``identitytoken``); libpod
    uses each for its host, mirrors included."""
    return _b64json({host: dict(auth) for host, auth in auths.items()})


def _params(values: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters as libpod wants them: booleans lower-case, dicts as JSON, no Nones."""
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, dict | list):
            out[key] = json.dumps(value)
        else:
            out[key] = str(value)
    return out


async def _raise_for(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    text = await response.text()
    try:
        message = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        message = text
    raise PodmanError(response.status, message.strip())


@dataclass
class ExecSession:
    """An attached exec session: the upgraded connection to the process's stdio."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tty: bool

    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """``(stream, data)`` until the process's output ends; with a tty all is stdout."""
        return self._raw() if self.tty else read_frames(self.reader)

    async def _raw(self) -> AsyncIterator[tuple[int, bytes]]:
        while data := await self.reader.read(65536):
            yield STDOUT, data

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the process's stdin."""
        self.writer.write(data)
        await self.writer.drain()

    def close_stdin(self) -> None:
        """Half-close the connection: the process reads EOF on stdin."""
        if self.writer.can_write_eof():
            self.writer.write_eof()

    async def close(self) -> None:
        """Drop the connection."""
        self.writer.close()
        await self.writer.wait_closed()


class PodmanClient:
    """libpod over ``socket_path``; one pooled aiohttp session, streams without timeouts."""

    def __init__(self, socket_path: Path | str) -> None:
        self.socket_path = str(socket_path)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> PodmanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One request; returns the decoded JSON answer (None when empty), raises PodmanError."""
        async with self._http().request(
            method,
            _BASE + API + path,
            params=_params(params or {}),
            json=body,
            data=data,
            headers=headers,
        ) as response:
            await _raise_for(response)
            text = await response.text()
        return json.loads(text) if text.strip() else None

    async def _stream(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.StreamReader]:
        async with self._http().request(
            method, _BASE + API + path, params=_params(params), headers=headers
        ) as response:
            await _raise_for(response)
            yield response.content

    async def _json_lines(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[dict[str, Any]]:
        async for content in self._stream(method, path, params, headers):
            async for line in content:
                if line.strip():
                    yield json.loads(line)

    # -- system ---------------------------------------------------------------------------

    async def ping(self) -> bool:
        """Whether the service answers."""
        try:
            async with self._http().get(_BASE + API + "/_ping") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def version(self) -> dict[str, Any]:
        """The service's version document (``Version``, ``ApiVersion``, ...)."""
        result: dict[str, Any] = await self.call("GET", "/version")
        return result

    async def info(self) -> dict[str, Any]:
        """``podman info``: host (runtime, cgroups, network backend) and store."""
        result: dict[str, Any] = await self.call("GET", "/info")
        return result

    def events(
        self, filters: Mapping[str, list[str]] | None = None
    ) -> AsyncGenerator[dict[str, Any]]:
        """Events from now on, one dict per event (``Type``, ``Action``, ``Actor``...)."""
        return self._json_lines("GET", "/events", {"stream": True, "filters": filters})

    # -- networks -------------------------------------------------------------------------

    async def network_create(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Create a network (``name``, ``driver``, ``network_interface``, ``subnets``...);
        returns it as libpod describes it."""
        result: dict[str, Any] = await self.call("POST", "/networks/create", body=spec)
        return result

    async def network_inspect(self, name: str) -> dict[str, Any]:
        """The network's description."""
        result: dict[str, Any] = await self.call("GET", f"/networks/{quote(name)}/json")
        return result

    async def network_remove(self, name: str, force: bool = False) -> None:
        """Remove the network (``force`` also removes the containers using it)."""
        await self.call("DELETE", f"/networks/{quote(name)}", {"force": force})

    # -- pods -----------------------------------------------------------------------------

    async def pod_create(self, spec: Mapping[str, Any]) -> str:
        """Create a pod (with its infra container) from a PodSpecGenerator; returns its id."""
        return str((await self.call("POST", "/pods/create", body=spec))["Id"])

    async def pod_inspect(self, name: str) -> dict[str, Any]:
        """The pod's inspect document."""
        result: dict[str, Any] = await self.call("GET", f"/pods/{quote(name)}/json")
        return result

    async def pod_list(self, filters: Mapping[str, list[str]] | None = None) -> list[dict]:
        """Pods matching ``filters`` (e.g. ``{"label": ["k=v"]}``)."""
        result: list[dict] = await self.call("GET", "/pods/json", {"filters": filters})
        return result

    async def pod_start(self, name: str) -> None:
        """Start the pod's infra container, then its containers."""
        await self.call("POST", f"/pods/{quote(name)}/start")

    async def pod_stop(self, name: str, grace: int | None = None) -> None:
        """Stop every container of the pod, SIGKILL after ``grace`` seconds (Podman 4.3
        takes 0 as its default of 10: use :meth:`pod_kill` to kill at once)."""
        await self.call("POST", f"/pods/{quote(name)}/stop", {"t": grace})

    async def pod_kill(self, name: str, signal: str = "SIGKILL") -> None:
        """Send ``signal`` to every container of the pod."""
        await self.call("POST", f"/pods/{quote(name)}/kill", {"signal": signal})

    async def pod_remove(self, name: str, force: bool = False) -> None:
        """Remove the pod (``force`` also stops and removes its containers)."""
        await self.call("DELETE", f"/pods/{quote(name)}", {"force": force})

    # -- containers -----------------------------------------------------------------------

    async def container_create(self, spec: Mapping[str, Any]) -> str:
        """Create a container from a SpecGenerator; returns its id."""
        return str((await self.call("POST", "/containers/create", body=spec))["Id"])

    async def container_start(self, name: str) -> None:
        """Start a created or exited container."""
        await self.call("POST", f"/containers/{quote(name)}/start")

    async def container_stop(self, name: str, grace: int | None = None) -> None:
        """Send the stop signal, SIGKILL after ``grace`` seconds."""
        await self.call("POST", f"/containers/{quote(name)}/stop", {"timeout": grace})

    async def container_kill(self, name: str, signal: str = "SIGKILL") -> None:
        """Send ``signal`` to the container's main process."""
        await self.call("POST", f"/containers/{quote(name)}/kill", {"signal": signal})

    async def container_wait(self, name: str, condition: str = "stopped") -> int:
        """Wait until the container reaches ``condition``; returns its exit code."""
        return int(
            await self.call("POST", f"/containers/{quote(name)}/wait", {"condition": condition})
        )

    async def container_inspect(self, name: str) -> dict[str, Any]:
        """The container's inspect document."""
        result: dict[str, Any] = await self.call("GET", f"/containers/{quote(name)}/json")
        return result

    async def container_list(self, filters: Mapping[str, list[str]] | None = None) -> list[dict]:
        """All containers (running or not) matching ``filters``."""
        result: list[dict] = await self.call(
            "GET", "/containers/json", {"all": True, "filters": filters}
        )
        return result

    async def container_remove(self, name: str, force: bool = False) -> None:
        """Remove the container (``force`` kills it first) and its anonymous volumes."""
        await self.call("DELETE", f"/containers/{quote(name)}", {"force": force, "v": True})

    async def logs(
        self,
        name: str,
        follow: bool = False,
        timestamps: bool = False,
        since: str | None = None,
        tail: int | None = None,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """The container's log as ``(stream, line)`` frames; ``follow`` keeps waiting for more.

        (A container created with a tty logs without frames; the agent never gives one.)"""
        params = {
            "stdout": True,
            "stderr": True,
            "follow": follow,
            "timestamps": timestamps,
            "since": since,
            "tail": tail,
        }
        async for content in self._stream("GET", f"/containers/{quote(name)}/logs", params):
            async for frame in read_frames(content):
                yield frame

    # -- exec -----------------------------------------------------------------------------

    async def exec_create(
        self,
        container: str,
        cmd: list[str],
        stdin: bool = False,
        tty: bool = False,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> str:
        """Set up an exec session in a running container; returns its id."""
        body: dict[str, Any] = {
            "Cmd": cmd,
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": tty,
        }
        if env:
            body["Env"] = [f"{k}={v}" for k, v in env.items()]
        if workdir:
            body["WorkingDir"] = workdir
        result = await self.call("POST", f"/containers/{quote(container)}/exec", body=body)
        return str(result["Id"])

    async def exec_start(self, exec_id: str, tty: bool = False) -> ExecSession:
        """Start the session and take over its connection (HTTP upgrade to a raw stream)."""
        body = json.dumps({"Detach": False, "Tty": tty}).encode()
        return await self._upgrade(f"/exec/{quote(exec_id)}/start", body, tty)

    async def attach(self, container: str, stdin: bool = False, tty: bool = False) -> ExecSession:
        """Attach to the running container's main process (its stdout and stderr, and its
        stdin when ``stdin``); ``tty`` as the container was created."""
        query = urlencode(
            {"stream": "true", "stdout": "true", "stderr": "true", "stdin": str(stdin).lower()}
        )
        return await self._upgrade(f"/containers/{quote(container)}/attach?{query}", b"", tty)

    async def _upgrade(self, path: str, body: bytes, tty: bool) -> ExecSession:
        """POST ``path`` asking for an upgrade to a raw stream; the session over it."""
        reader, writer = await asyncio.open_unix_connection(self.socket_path)
        writer.write(
            (
                f"POST {API}{path} HTTP/1.1\r\nHost: podman\r\n"
                "Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        if status not in (101, 200):
            fields = dict(h.split(":", 1) for h in head[1:] if ":" in h)
            size = int(fields.get("Content-Length", "0"))
            text = (await reader.readexactly(size)).decode(errors="replace") if size else ""
            writer.close()
            try:
                message = json.loads(text).get("message", text)
            except ValueError:
                message = text
            raise PodmanError(status, message)
        return ExecSession(reader, writer, tty)

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        """Resize the session's tty."""
        await self.call("POST", f"/exec/{quote(exec_id)}/resize", {"h": height, "w": width})

    async def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        """The session's state (``Running``, ``ExitCode``)."""
        result: dict[str, Any] = await self.call("GET", f"/exec/{quote(exec_id)}/json")
        return result

    # -- images ---------------------------------------------------------------------------

    async def image_load(self, path: Path) -> list[str]:
        """Load a docker-archive or OCI archive (optionally compressed); returns its names."""
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            # aiohttp reads a file payload's chunks in its executor, off the event loop
            result = await self.call(
                "POST", "/images/load", data=handle, headers={"Content-Type": "application/x-tar"}
            )
        finally:
            await asyncio.to_thread(handle.close)
        return list(result.get("Names") or [])

    async def image_exists(self, name: str) -> bool:
        """Whether the image is in the store."""
        try:
            await self.call("GET", f"/images/{quote(name, safe='')}/exists")
        except PodmanError as e:
            if e.status == 404:
                return False
            raise
        return True

    async def image_list(self) -> list[dict]:
        """Every image in the store."""
        result: list[dict] = await self.call("GET", "/images/json")
        return result

    async def image_remove(self, name: str, force: bool = False) -> None:
        """Remove an image (``force`` also removes containers using it)."""
        await self.call("DELETE", f"/images/{quote(name, safe='')}", {"force": force})

    async def image_inspect(self, name: str) -> dict[str, Any]:
        """The image's inspect document (``Id``, ``RepoTags``, ``RepoDigests``, ``Size``...)."""
        result: dict[str, Any] = await self.call("GET", f"/images/{quote(name, safe='')}/json")
        return result

    async def image_pull(
        self, reference: str, auth: str | None = None, tls_verify: bool | None = None
    ) -> list[str]:
        """Pull ``reference`` (``auth``: an X-Registry-Auth value, one registry's or a map of
        them; ``tls_verify=False`` also allows plain HTTP, None leaves it to
        registries.conf); returns the image ids."""
        headers = {"X-Registry-Auth": auth} if auth else None
        ids: list[str] = []
        params = {"reference": reference, "quiet": True, "tlsVerify": tls_verify}
        async for report in self._json_lines("POST", "/images/pull", params, headers):
            if report.get("error"):
                raise PodmanError(500, report["error"])
            ids.extend(report.get("images") or [])
        return ids
