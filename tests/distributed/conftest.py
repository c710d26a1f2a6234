import sys
from pathlib import Path

# the Session tests' helpers (configs, datasets) serve these tests too
sys.path.insert(0, str(Path(__file__).parents[1] / "session"))
