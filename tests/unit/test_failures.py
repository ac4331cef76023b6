"""`cigri.cli.failures.describe`: an exception as one line in the user's words, never with the SQL
statement or its parameters (a cluster's password, a token) in it."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError, StatementError

from cigri.cli.failures import describe


def test_a_failed_statement_never_shows_its_parameters() -> None:
    error = StatementError("(builtins.ValueError) bad value", "INSERT INTO clusters ...",
                           {"api_password": "s3cret"}, ValueError("bad value"))
    line = describe(error)
    assert "s3cret" not in line and "INSERT" not in line and "bad value" in line
    assert "\n" not in line


def test_a_missing_database_says_how_to_create_it() -> None:
    orig = Exception('connection failed: connection to server at "db.example", port 5433 '
                     'failed: FATAL:  database "grid" does not exist')
    line = describe(OperationalError("connect", {}, orig))
    assert line == ("database grid does not exist on db.example:5433; create it with "
                    "`createdb -h db.example -p 5433 grid`, then run `cigri db upgrade`")


def test_an_unexpected_error_says_how_to_see_more() -> None:
    line = describe(KeyError("x"))
    assert line.startswith("unexpected error (KeyError: 'x')") and "CIGRI_DEBUG=1" in line
