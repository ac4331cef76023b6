"""Tokens on the command line (issue 10, point 5): `gridtoken create` prints the secret alone on
stdout, so `gridtoken create > ~/.config/cigri/token` makes a token file the client reads (with
whitespace around the token stripped); a malformed token file is refused with one line naming it;
`cigri user-mapping set` never echoes the JWT it stores."""

from __future__ import annotations

import json

from .conftest import Grid


def test_gridtoken_create_redirected_to_a_file_is_a_working_token_file(grid: Grid) -> None:
    created = grid.run("gridtoken", "create", "--name", "laptop", via_socket=True)
    assert created.returncode == 0, created.stderr
    assert len(created.stdout.splitlines()) == 1
    token = created.stdout.strip()
    assert token not in created.stderr and "created" in created.stderr
    token_file = grid.home / ".config" / "cigri" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(created.stdout)
    whoami = grid.run("gridstat", "--json", user=None,
                      extra_env={"CIGRI_API_TOKEN_FILE": str(token_file)})
    assert whoami.returncode == 0, whoami.stderr
    as_json = grid.run("gridtoken", "--json", "create", via_socket=True)
    assert json.loads(as_json.stdout)["token"]


def test_a_token_file_with_blank_lines_and_spaces_around_the_token_works(grid: Grid) -> None:
    token_file = grid.home / "token"
    token_file.write_text(f"\n  {grid.token('alice')}  \r\n\n")
    result = grid.run("gridstat", user=None, extra_env={"CIGRI_API_TOKEN_FILE": str(token_file)})
    assert result.returncode == 0, result.stderr


def test_a_two_line_token_file_is_refused_in_one_line_naming_it(grid: Grid) -> None:
    token_file = grid.home / "token"
    token_file.write_text(f"token 7 created:\n{grid.token('alice')}\n")
    result = grid.run("gridstat", user=None, extra_env={"CIGRI_API_TOKEN_FILE": str(token_file)})
    assert result.returncode == 1
    assert result.stderr.startswith(f"gridstat: token file {token_file} is malformed")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_user_mapping_set_does_not_echo_the_jwt(grid: Grid) -> None:
    secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig-abcdef"
    result = grid.admin("user-mapping", "set", "bob", "dahu", f"Bearer {secret}")
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    assert result.stdout == "bob runs as Bearer ...abcdef on dahu\n"
    plain = grid.admin("user-mapping", "set", "bob", "luke", "bob_l")
    assert plain.stdout == "bob runs as bob_l on luke\n"
