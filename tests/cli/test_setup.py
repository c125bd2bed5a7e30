"""`keyorch init` and what happens before it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Cli


def test_commands_before_init_tell_to_run_init_and_init_twice_is_fine(cli: Cli) -> None:
    missing_dir = f"sqlite:///{cli.workdir}/nonexistent-dir/x.db"
    before = cli.many([["vault", "list"], ["key", "list", "--include-destroyed"], ["audit", "list"]])
    before.append(cli("--db", missing_dir, "vault", "list", db=False))
    for result in before:
        assert result.code == 2 and not result.out, str(result)
        assert "keyorch init" in result.err and len(result.err.strip().splitlines()) == 1, str(result)
    assert not cli.db_path.exists(), "a command before init must not leave an empty database behind"
    assert not (cli.workdir / "nonexistent-dir").exists()

    first = cli.ok("init")
    assert first["changed"] is True and first["schema_before"] is None and first["schema"]
    second = cli.ok("init")
    assert second["changed"] is False and second["schema"] == first["schema"]
    table = cli("init", output_json=False)
    assert table.code == 0 and "already" in table.out
    assert cli.ok("vault", "list") == []
