import subprocess
import sys


def test_config_imports_without_numpy():
    code = "import sys, hugectr_lab.config; assert 'numpy' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
