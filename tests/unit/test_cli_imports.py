import subprocess
import sys


def imported_after(statement: str, prefixes: tuple[str, ...]) -> list[str]:
    probe = (
        f"import sys; {statement}; "
        f"print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return list(eval(result.stdout))


def test_the_command_line_does_not_import_prometheus_client_before_serving() -> None:
    # prometheus_client picks single- or multi-process mode once, at import;
    # `smsq serve` sets the mode for its workers, which inherit its imports.
    assert imported_after("import api.cli.main", ("prometheus_client",)) == []


def test_what_serves_no_http_imports_no_http_code() -> None:
    # The command line and the worker's background work open pools, run
    # projectors and read the log without the HTTP app or its framework.
    statement = "import api.cli.main, api.runtime.background, api.runtime.pooling"
    assert imported_after(statement, ("api.http", "litestar")) == []
