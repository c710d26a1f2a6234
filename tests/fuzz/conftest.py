"""Print how many inputs each fuzz target tried, at the end of the run (CI keeps the log)."""

from fuzzing import TRIED


def pytest_terminal_summary(terminalreporter):
    if TRIED:
        terminalreporter.section("fuzz inputs tried")
        for target, count in sorted(TRIED.items()):
            terminalreporter.write_line(f"{target}: {count}")
        terminalreporter.write_line(f"all fuzz targets: {sum(TRIED.values())} inputs")
