"""Reads an .hlog with PyPI's `hdrhistogram` (an HdrHistogram implementation
other than bounce's) and prints, per tagged histogram, one JSON line:
{"tag", "count", "p50", "p90", "p99", "max"} (values in the log's unit)."""
import json
import sys

from hdrh.histogram import HdrHistogram

for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith("#") or line.startswith('"'):
        continue
    fields = line.split(",")
    tag = None
    if fields[0].startswith("Tag="):
        tag, fields = fields[0][4:], fields[1:]
    h = HdrHistogram.decode(fields[3].encode())
    print(json.dumps({
        "tag": tag,
        "count": h.get_total_count(),
        "p50": h.get_value_at_percentile(50),
        "p90": h.get_value_at_percentile(90),
        "p99": h.get_value_at_percentile(99),
        "max": h.get_max_value(),
    }))
