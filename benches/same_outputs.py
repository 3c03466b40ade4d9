#!/usr/bin/env python3
"""Do two pcaplab builds write the same Parquet for every capture of the corpus?

    benches/same_outputs.py A_BIN B_BIN [--corpus DIR] [--out DIR] [--formats LIST]

(benches/same_outputs.sh runs it with the project venv's pyarrow.) Every file listed in the
corpus' manifest.csv and manifest-depth.csv is converted by each build on its own:

    BIN convert FILE --out DIR/{a,b}/FILE --format parquet,flows --quiet

A file that a build rejects (exit status 1, "not a packet capture" or "unsupported capture")
is skipped, and counted and listed; a damaged capture (exit status 1, "damaged …": converted up
to the damage, outputs written) is compared like the others, and the two builds' messages about
it must be the same too. Rejected or damaged by one build and not the other is a difference;
any other failure of a build is an error. Then the two builds' output trees must hold the same
files (packets/date=…/FILE.parquet, flows/date=…/FILE.flows.parquet), and of each Parquet pair
the schemas must be equal (field names, types, nullability, metadata), then the row counts,
then each column's values (pyarrow's ChunkedArray.equals; NaNs in the same places count as
equal). On a mismatch it prints the file, the column and the first differing row with both
values.

One line per capture ("same" or "DIFF"), then the totals. Exit status: 0 when every output is
the same, 1 on any difference, 2 on an error (a failed conversion, a missing file).
--out DIR keeps the outputs there (otherwise a temporary directory, removed at the end).
"""
import argparse
import csv
import math
import os
import shutil
import subprocess
import sys
import tempfile

import pyarrow.parquet as pq


def manifest_files(corpus):
    files = []
    for name in ("manifest.csv", "manifest-depth.csv"):
        with open(os.path.join(corpus, name), newline="") as f:
            for row in csv.DictReader(f):
                if row["file"] not in files:
                    files.append(row["file"])
    return files


def convert(exe, capture, out, formats):
    """(outcome, message): ("ok", ""); ("damaged", the tool's line) for a capture converted up to
    its damage (exit status 1, outputs written); ("rejected", the reason) for a file it does not
    read as a capture ("not a packet capture", "unsupported capture"); ("failed", stderr)."""
    p = subprocess.run([exe, "convert", capture, "--out", out, "--format", formats, "--quiet"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = p.stderr.splitlines()
    if p.returncode == 0:
        return "ok", ""
    if p.returncode == 1:
        for line in lines:
            if line.startswith("damaged "):
                return "damaged", line.split(": ", 1)[-1]
            if line.startswith("failed ") and ("not a packet capture" in line
                                               or "unsupported capture" in line):
                return "rejected", line.split(": ", 1)[1]
    return "failed", f"exit status {p.returncode}: {p.stderr.strip()}"


def show(status):
    return status[0] + (f": {status[1]}" if status[1] else "")


def tree(root):
    found = set()
    for d, _, names in os.walk(root):
        found.update(os.path.relpath(os.path.join(d, n), root) for n in names)
    return found


def same_value(x, y):
    return x == y or (isinstance(x, float) and isinstance(y, float)
                      and math.isnan(x) and math.isnan(y))


def compare_parquet(a, b, common=False):
    """None when the two files hold the same table, else what differs first. With `common`,
    only the columns both have are compared (B may add columns: a change that adds some)."""
    ta, tb = pq.read_table(a), pq.read_table(b)
    if common:
        names = [n for n in ta.schema.names if n in tb.schema.names]
        ta, tb = ta.select(names), tb.select(names)
        ta = ta.replace_schema_metadata(None)
        tb = tb.replace_schema_metadata(None)
    if not ta.schema.equals(tb.schema, check_metadata=True):
        na, nb = ta.schema.names, tb.schema.names
        if set(na) != set(nb):
            return (f"schema: columns only in A: {[n for n in na if n not in nb]}, "
                    f"only in B: {[n for n in nb if n not in na]}")
        for i, (fa, fb) in enumerate(zip(ta.schema, tb.schema)):
            if not fa.equals(fb, check_metadata=True):
                return f"schema: column {i}: {fa} vs {fb}"
        return f"schema metadata: {ta.schema.metadata} vs {tb.schema.metadata}"
    if ta.num_rows != tb.num_rows:
        return f"rows: {ta.num_rows} vs {tb.num_rows}"
    for name in ta.schema.names:
        ca, cb = ta.column(name), tb.column(name)
        if ca.equals(cb):
            continue
        # Walk the values: the first that differs, or none (NaNs, which equals() never matches).
        for row, (x, y) in enumerate(zip(ca.to_pylist(), cb.to_pylist())):
            if not same_value(x, y):
                return f"column {name}, row {row}: {x!r} vs {y!r}"
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a_bin")
    p.add_argument("b_bin")
    p.add_argument("--corpus", default=os.environ.get("PCAPLAB_CORPUS"), required=
                   "PCAPLAB_CORPUS" not in os.environ, help="[default: $PCAPLAB_CORPUS]")
    p.add_argument("--out", help="keep the outputs in this directory")
    p.add_argument("--formats", default="parquet,flows")
    p.add_argument("--common-columns", action="store_true",
                   help="compare only the columns both builds write (B may add columns)")
    a = p.parse_args()

    work = a.out or tempfile.mkdtemp(prefix="same-outputs.")
    try:
        return run(a, work)
    finally:
        if not a.out:
            shutil.rmtree(work, ignore_errors=True)


def run(a, work):
    files = manifest_files(a.corpus)
    print(f"A: {a.a_bin}\nB: {a.b_bin}\n{len(files)} files in the corpus' manifests; "
          f"--format {a.formats}")
    same, differ, rejected, damaged, errors = [], [], [], [], []
    parquet_files = 0
    for name in files:
        capture = os.path.join(a.corpus, name)
        if not os.path.isfile(capture):
            errors.append(f"{name}: listed in a manifest but missing")
            print(f"ERROR  {errors[-1]}")
            continue
        outs = [os.path.join(work, side, name) for side in ("a", "b")]
        status = []
        for exe, out in zip((a.a_bin, a.b_bin), outs):
            shutil.rmtree(out, ignore_errors=True)
            status.append(convert(exe, capture, out, a.formats))
        if "failed" in (status[0][0], status[1][0]):
            errors.append(f"{name}: A {show(status[0])}; B {show(status[1])}")
            print(f"ERROR  {errors[-1]}")
            continue
        if status[0][0] != status[1][0]:
            differ.append(f"{name}: A {show(status[0])}; B {show(status[1])}")
            print(f"DIFF   {differ[-1]}")
            continue
        if status[0][0] == "rejected":
            rejected.append(name)
            print(f"skip   {name}: {status[0][1]} (both)")
            continue
        ta, tb = tree(outs[0]), tree(outs[1])
        problems = [] if status[0] == status[1] else [
            f"A {show(status[0])}, B {show(status[1])}"]
        problems += [f"only A wrote {f}" for f in sorted(ta - tb)]
        problems += [f"only B wrote {f}" for f in sorted(tb - ta)]
        rows = []
        for f in sorted(ta & tb):
            if not f.endswith(".parquet"):
                continue
            parquet_files += 1
            what = compare_parquet(os.path.join(outs[0], f), os.path.join(outs[1], f),
                                   a.common_columns)
            if what:
                problems.append(f"{f}: {what}")
            else:
                rows.append(f"{f.split('/')[0]} {pq.read_metadata(os.path.join(outs[0], f)).num_rows}")
        if problems:
            differ.append(f"{name}: " + "; ".join(problems))
            print(f"DIFF   {differ[-1]}")
        else:
            same.append(name)
            if status[0][0] == "damaged":
                damaged.append(name)
            note = f" (damaged, both: {status[0][1].rsplit(': ', 1)[-1]})" if status[0][1] else ""
            print(f"same   {name}: {', '.join(rows) or 'no Parquet written'}{note}")
    print(f"\n{len(same)} captures the same ({parquet_files} Parquet files compared), "
          f"{len(damaged)} of them damaged (exit status 1, the same message), "
          f"{len(differ)} different, {len(rejected)} not captures or unsupported (skipped), "
          f"{len(errors)} errors")
    if rejected:
        print("skipped: " + ", ".join(rejected))
    if differ:
        print("different: " + ", ".join(d.split(": ", 1)[0] for d in differ))
    for e in errors:
        print(f"error: {e}")
    return 2 if errors else 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
