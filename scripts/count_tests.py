#!/usr/bin/env python3
"""Counts test results from a meson testlog.json.

A Check suite counts each of its test cases (its "Checks: N, Failures: F,
Errors: E" summary); any other test counts once. A suite whose process
failed although Check reported no failure (a sanitizer report at exit, a
crash after the summary) counts one more failure. Prints one line:
"N passed, N failed" (", N skipped" when any were skipped).
"""
import json
import re
import sys

CHECK_RE = re.compile(r"(\d+)%: Checks: (\d+), Failures: (\d+), Errors: (\d+)")


def main(path):
    passed = failed = skipped = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            t = json.loads(line)
            result = t.get("result", "")
            out = (t.get("stdout") or "") + (t.get("stderr") or "")
            sums = CHECK_RE.findall(out)
            if result == "SKIP":
                skipped += 1
                continue
            ok = result in ("OK", "EXPECTEDFAIL")
            if sums:
                for _, checks, fails, errs in sums:
                    bad = int(fails) + int(errs)
                    passed += int(checks) - bad
                    failed += bad
                if not ok and all(int(x[2]) + int(x[3]) == 0 for x in sums):
                    failed += 1
            elif ok:
                passed += 1
            else:
                failed += 1
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)


if __name__ == "__main__":
    main(sys.argv[1])
