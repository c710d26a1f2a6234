"""Small Criteo-format TSV files written by the tests (label, I1-I13, C1-C26; empty = missing)."""

import numpy as np


def write_criteo_tsv(path, n, seed=0, missing=0.1, vocab=40):
    """``n`` lines with power-law categories (so counts tie), negative and missing integers."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        fields = [str(int(rng.random() < 0.3))]
        for j in range(13):
            fields.append("" if rng.random() < missing else str(int(rng.integers(-3, 50 + 100 * j))))
        for j in range(26):
            if rng.random() < missing:
                fields.append("")
            else:
                rank = min(int(rng.zipf(1.3)), vocab + j)
                fields.append(f"{(rank * 2654435761 + j * 97) % 2**32:08x}")
        lines.append("\t".join(fields))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def tiny_tsv(path):
    """Six hand-made lines whose codes and dense values the tests work out by hand (C3..C26 empty)."""
    empty = [""] * 24
    rows = [
        ["1", "0", "-2", "5"] + [""] * 10 + ["bb", "x"] + empty,
        ["0", "", "3", "5"] + [""] * 10 + ["aa", "x"] + empty,
        ["1", "7", "", "5"] + [""] * 10 + ["bb", ""] + empty,
        ["0", "1", "1", "5"] + [""] * 10 + ["aa", "y"] + empty,
        ["0", "2", "2", "5"] + [""] * 10 + ["cc", "y"] + empty,
        ["1", "3", "3", "5"] + [""] * 10 + ["dd", "y"] + empty,
    ]
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    return str(path)
