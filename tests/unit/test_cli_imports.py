import subprocess
import sys


def test_the_command_line_does_not_import_prometheus_client_before_serving() -> None:
    # prometheus_client picks single- or multi-process mode once, at import;
    # `smsq serve` sets the mode for its workers, which inherit its imports.
    probe = "import sys, api.cli; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
