"""`asgi-guard credits grant|set|show` against a real valkey-server and the memory backend."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

import pytest

from asgi_guard.stages.credits import credit_store
from asgi_guard.stages.credits.cli import add_parser, main
from asgi_guard.state import MemoryBackend, ValkeyBackend


def cli(*args: str, url: str, prefix: str = "ag") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASGI_GUARD_VALKEY_URL": url, "ASGI_GUARD_KEY_PREFIX": prefix}
    return subprocess.run(
        [sys.executable, "-m", "asgi_guard.stages.credits.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cli_process_on_valkey(valkey_url: str, key_prefix: str) -> None:
    """The real command in its own process: prints plain numbers, shares balances with the app."""
    assert cli("grant", "alice", "5", "--type", "gpu", url=valkey_url, prefix=key_prefix).stdout == "5\n"
    assert cli("show", "alice", "--type", "gpu", url=valkey_url, prefix=key_prefix).stdout == "5\n"

    async def balance() -> int:
        backend = ValkeyBackend(valkey_url, key_prefix=key_prefix)
        try:
            return await credit_store(backend).balance("alice", "gpu")
        finally:
            await backend.close()

    assert asyncio.run(balance()) == 5


def test_cli_commands_on_valkey(
    valkey_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASGI_GUARD_VALKEY_URL", valkey_url)
    monkeypatch.setenv("ASGI_GUARD_KEY_PREFIX", key_prefix)
    for argv, expected in (
        (["show", "bob"], "0"),
        (["grant", "bob", "5"], "5"),
        (["grant", "bob", "2"], "7"),
        (["set", "bob", "40", "--type", "gpu"], "40"),
        (["show", "bob"], "7"),
        (["show", "bob", "--type", "gpu"], "40"),
        (["grant", "bob", "-3"], "4"),
    ):
        assert main(argv) == 0
        assert capsys.readouterr().out == expected + "\n"
    assert main(["grant", "bob", "-100"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "negative" in captured.err
    with pytest.raises(SystemExit) as exit_info:
        main(["set", "bob", "-1"])
    assert exit_info.value.code == 2
    assert main(["show", "bob"]) == 0 and capsys.readouterr().out == "4\n"


def test_cli_unreachable_valkey_fails_cleanly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASGI_GUARD_VALKEY_URL", "valkey://127.0.0.1:1/0")
    assert main(["show", "alice"]) == 1
    assert "valkey" in capsys.readouterr().err


def test_cli_wired_as_subcommand_on_memory(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="asgi-guard")
    add_parser(parser.add_subparsers(dest="command"))
    backend = MemoryBackend()
    for argv, expected in (
        (["credits", "grant", "carol", "3"], "3"),
        (["credits", "grant", "carol", "4"], "7"),
        (["credits", "set", "carol", "2", "--type", "tpu"], "2"),
        (["credits", "show", "carol"], "7"),
        (["credits", "show", "carol", "--type", "tpu"], "2"),
    ):
        args = parser.parse_args(argv)
        assert args.handler(args, backend) == 0
        assert capsys.readouterr().out == expected + "\n"


def test_cli_memory_from_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-process store is refused (exit 2) unless --memory, which says the balance is local."""
    monkeypatch.setenv("ASGI_GUARD_VALKEY_URL", "memory://")
    assert main(["grant", "dave", "9"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--memory" in captured.err
    assert main(["grant", "dave", "9", "--memory"]) == 0
    assert main(["show", "dave", "--memory"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "9\n0\n", "the embedded backend lives as long as the command"
    assert captured.err.count("only in this process") == 2


def test_wired_into_the_asgi_guard_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgi_guard.cli import main as asgi_guard_main

    monkeypatch.setenv("ASGI_GUARD_VALKEY_URL", "memory://")
    assert asgi_guard_main(["credits", "set", "erin", "12", "--type", "gpu", "--memory"]) == 0
    assert capsys.readouterr().out == "12\n"


def test_ip_flag_addresses_an_anonymous_clients_balance_on_valkey(
    valkey_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--ip`: the balance the anonymous client at that address spends, kept apart from the user
    whose subject reads the same (both through `asgi-guard credits`, on a real valkey-server)."""
    from asgi_guard.cli import main as asgi_guard_main
    from asgi_guard.stages.credits import Anonymous

    monkeypatch.setenv("ASGI_GUARD_VALKEY_URL", valkey_url)
    monkeypatch.setenv("ASGI_GUARD_KEY_PREFIX", key_prefix)
    assert asgi_guard_main(["credits", "set", "203.0.113.7", "4", "--ip"]) == 0
    assert asgi_guard_main(["credits", "grant", "203.0.113.7", "1", "--ip"]) == 0
    assert asgi_guard_main(["credits", "set", "203.0.113.7", "9"]) == 0
    assert asgi_guard_main(["credits", "show", "203.0.113.7", "--ip"]) == 0
    assert capsys.readouterr().out == "4\n5\n9\n5\n"

    async def balances() -> tuple[int, int]:
        backend = ValkeyBackend(valkey_url, key_prefix=key_prefix)
        try:
            store = credit_store(backend)
            return await store.balance(Anonymous("203.0.113.7")), await store.balance("203.0.113.7")
        finally:
            await backend.close()

    assert asyncio.run(balances()) == (5, 9)
