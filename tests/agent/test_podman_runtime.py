"""The agent's runtime layer on real Podman: its own service and storage, airgap import,
a pod's lifecycle through the libpod client (logs, exec, stop, wait, events), two services
side by side, the runtime probe and the container ulimits."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.images import images_dir, import_directory
from agent.podman.client import PodmanClient, PodmanError
from agent.podman.frames import STDERR, STDOUT
from agent.podman.service import PodmanService
from tests.agent.busybox_image import IMAGE
from tests.agent.conftest import needs_podman
from tests.agent.pods import httpd_pod, running_pod

pytestmark = [pytest.mark.e2e, needs_podman, pytest.mark.asyncio(loop_scope="module")]
LABEL = "edgek.io/test"
CGROUP_V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()


async def _run(*cmd: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _collect(session_output: AsyncIterator[tuple[int, bytes]]) -> dict[int, bytes]:
    out: dict[int, bytes] = {STDOUT: b"", STDERR: b""}
    async for stream, data in session_output:
        out[stream] = out.get(stream, b"") + data
    return out


async def _ensure_image(client: PodmanClient, service: PodmanService) -> None:
    if not await client.image_exists(IMAGE):
        await import_directory(client, images_dir(service.layout.agent_dir))


async def test_own_storage_and_probed_runtime(service: PodmanService) -> None:
    """Storage, run root and events live under the data dir; the runtime is the probed one
    (runc where crun cannot run: cgroup v1 or hybrid hosts such as this CI machine)."""
    async with PodmanClient(service.socket) as client:
        info = await client.info()
        version = await client.version()
    base = str(service.layout.base)
    assert info["store"]["graphRoot"].startswith(base)
    assert info["store"]["runRoot"].startswith(base)
    assert info["host"]["ociRuntime"]["name"] == service.runtime
    assert info["host"]["eventLogger"] == "file"
    assert version["Version"].startswith("4.")
    if not CGROUP_V2:
        assert service.runtime == "runc"


async def test_airgap_import_is_idempotent_and_host_untouched(service: PodmanService) -> None:
    """The images directory is imported once; a second pass skips it until the image is
    removed; the host's own Podman never sees the image."""
    async with PodmanClient(service.socket) as client:
        if await client.image_exists(IMAGE):
            await client.image_remove(IMAGE, force=True)
        first = await import_directory(client, images_dir(service.layout.agent_dir))
        assert [(r.names, r.skipped, r.error) for r in first] == [([IMAGE], False, "")]
        second = await import_directory(client, images_dir(service.layout.agent_dir))
        assert [(r.names, r.skipped) for r in second] == [([IMAGE], True)]
        tags = [t for image in await client.image_list() for t in image.get("RepoTags") or []]
        assert IMAGE in tags
        await client.image_remove(IMAGE)
        third = await import_directory(client, images_dir(service.layout.agent_dir))
        assert [(r.names, r.skipped) for r in third] == [([IMAGE], False)]
    code, out, _ = await _run("podman", "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert code == 0
    assert IMAGE not in out.split()


async def _check_execs(client: PodmanClient, ctr: str) -> None:
    """exec in a running container: stdin, stderr and exit code; the ulimits; a resized
    tty."""
    exec_id = await client.exec_create(ctr, ["sh", "-c", "cat; echo err >&2; exit 3"], stdin=True)
    session = await client.exec_start(exec_id)
    await session.write(b"from stdin\n")
    session.close_stdin()
    out = await _collect(session.output())
    await session.close()
    assert out == {STDOUT: b"from stdin\n", STDERR: b"err\n"}
    assert (await client.exec_inspect(exec_id))["ExitCode"] == 3

    exec_id = await client.exec_create(ctr, ["sh", "-c", "ulimit -Hn; ulimit -Hu"])
    session = await client.exec_start(exec_id)
    nofile, nproc = (int(v) for v in (await _collect(session.output()))[STDOUT].split())
    await session.close()
    assert nofile <= resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert nproc <= resource.getrlimit(resource.RLIMIT_NPROC)[1]

    exec_id = await client.exec_create(ctr, ["sh"], stdin=True, tty=True)
    session = await client.exec_start(exec_id, tty=True)
    await client.exec_resize(exec_id, 33, 111)
    await session.write(b"stty size; exit 5\n")
    tty_out = (await _collect(session.output()))[STDOUT]
    await session.close()
    assert b"33 111" in tty_out
    assert (await client.exec_inspect(exec_id))["ExitCode"] == 5


async def test_pod_lifecycle(service: PodmanService) -> None:
    """pod + container: start, logs, exec (stdin, stderr, exit code, ulimits), events see
    the container die, stop with a grace period, wait's exit code, remove."""
    async with PodmanClient(service.socket) as client:
        await _ensure_image(client, service)
        events = client.events({"type": ["container"], "event": ["died"]})
        first_event = asyncio.ensure_future(anext(events))
        pod = await client.pod_create(
            {"name": "life", "labels": {LABEL: "life"}, "netns": {"nsmode": "none"}}
        )
        script = (
            'echo hello; echo oops >&2; trap "echo bye; exit 3" TERM; while :; do sleep 0.1; done'
        )
        ctr = await client.container_create(
            {"name": "life-main", "pod": pod, "image": IMAGE, "command": ["sh", "-c", script]}
        )
        await client.container_start(ctr)
        assert (await client.container_inspect(ctr))["State"]["Running"]

        for _ in range(50):
            logs = [frame async for frame in client.logs(ctr)]
            if len(logs) >= 2:
                break
            await asyncio.sleep(0.1)
        assert sorted(logs) == [(STDOUT, b"hello\n"), (STDERR, b"oops\n")]

        await _check_execs(client, ctr)

        assert not first_event.done()
        await client.container_stop(ctr, grace=10)
        assert await client.container_wait(ctr) == 3
        event = await asyncio.wait_for(first_event, 10)
        assert event["Actor"]["ID"] == ctr
        assert event["Actor"]["Attributes"]["containerExitCode"] == "3"
        assert b"bye\n" in b"".join([data async for _, data in client.logs(ctr, tail=1)])
        await events.aclose()

        await client.container_remove(ctr)
        with pytest.raises(PodmanError) as missing:
            await client.container_inspect(ctr)
        assert missing.value.status == 404
        await client.pod_remove(pod, force=True)
        assert not await client.pod_list({"label": [f"{LABEL}=life"]})


async def test_stop_kills_after_the_grace_period(service: PodmanService) -> None:
    """A container ignoring SIGTERM is killed when the grace period ends (exit 137)."""
    async with PodmanClient(service.socket) as client:
        await _ensure_image(client, service)
        script = "trap '' TERM; while :; do sleep 0.1; done"
        async with running_pod(client, "grace", ["sh", "-c", script]) as (_, ctr, _):
            started = time.monotonic()
            await client.container_stop(ctr, grace=1)
            assert 0.9 < time.monotonic() - started < 8
            assert await client.container_wait(ctr) == 137


async def test_pod_on_a_bridge_network_answers_from_the_node(
    service: PodmanService, netns: list[str]
) -> None:
    """A bridge network of the agent's (inside the test's namespace): the pod gets an
    address from its subnet and its httpd answers from the node's side."""
    async with PodmanClient(service.socket) as client:
        await _ensure_image(client, service)
        async with httpd_pod(client, "edgek", "10.77.3.0/24", "10.77.3.1") as ip:
            subnet = {"subnet": "10.77.3.0/24", "gateway": "10.77.3.1"}
            assert (await client.network_inspect("edgek"))["subnets"] == [subnet]
            assert ip.startswith("10.77.3.")
            fetch = f"import urllib.request as u; print(u.urlopen('http://{ip}:8080/passwd', timeout=5).read().decode())"
            for _ in range(20):  # httpd binds just after the start
                code, out, err = await _run(*netns, sys.executable, "-c", fetch)
                if code == 0:
                    break
                await asyncio.sleep(0.1)
            assert code == 0, err
            assert out.startswith("root:x:0:0:")
        assert not await client.pod_list({"name": ["edgek"]})
        with pytest.raises(PodmanError):
            await client.network_inspect("edgek")


async def test_two_services_side_by_side(
    service: PodmanService, netns: list[str], short_dirs: Callable[[], Path]
) -> None:
    """A second agent data dir gets its own service and storage, beside the first one."""
    other = PodmanService(short_dirs() / "agent", command_prefix=netns)
    await other.start()
    try:
        async with PodmanClient(other.socket) as b, PodmanClient(service.socket) as a:
            await _ensure_image(a, service)
            assert not await b.image_exists(IMAGE)
            assert (await b.info())["store"]["graphRoot"].startswith(str(other.layout.base))
            assert await a.image_exists(IMAGE)
    finally:
        await other.stop()
    assert other.pid is None


async def test_service_is_restarted_when_it_exits(service: PodmanService) -> None:
    """The supervisor brings a killed service back on the same socket."""
    pid = service.pid
    assert pid is not None
    os.kill(pid, 9)
    async with PodmanClient(service.socket) as client:
        for _ in range(100):
            if service.pid not in (None, pid) and await client.ping():
                break
            await asyncio.sleep(0.1)
        assert service.restarts == 1
        assert await client.ping()


async def test_images_import_command(
    service: PodmanService, busybox_tar: Path, netns: list[str], short_dirs: Callable[[], Path]
) -> None:
    """``edgek images import`` loads into the agent's storage through a service of its own
    when the agent's is not running; a file Podman cannot load fails the command."""
    data_dir = short_dirs()
    cmd = [*netns, sys.executable, "-m", "edgek", "images", "import"]
    code, out, err = await _run(*cmd, "--data-dir", str(data_dir), str(busybox_tar))
    assert code == 0, err
    assert out.strip() == f"{busybox_tar}: {IMAGE}"
    garbage = data_dir / "garbage.tar"
    garbage.write_bytes(b"not an image")
    code, out, err = await _run(*cmd, "--podman-socket", str(service.socket), str(garbage))
    assert code == 1
    assert str(garbage) in err
    svc = PodmanService(data_dir / "agent", command_prefix=netns)
    await svc.start()
    try:
        async with PodmanClient(svc.socket) as client:
            assert await client.image_exists(IMAGE)
    finally:
        await svc.stop()
