#!/usr/bin/env python3
"""Expands an iCalendar file with independent, non-Rust parsers (Python's `icalendar` and
`recurring-ical-events`) and prints its occurrences inside [from, to) as JSON lines, so a
test can hold them against the agenda the query API answers.

    python3 e2e/ics/expand.py calendar.ics 2027-01-01T00:00:00Z 2028-01-01T00:00:00Z

Each line: {"uid", "start", "end" (UTC, RFC 3339), "status", "recurrence_id" (UTC or null),
"partstat": {mailto: PARTSTAT}}. Exits 1 when the file does not parse.
.ci/run installs the pinned versions: `pip install icalendar==6.3.1 recurring-ical-events==3.8.0`.
"""
import json
import sys
from datetime import datetime, timezone

import icalendar
import recurring_ical_events


def utc(value):
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    path, start, end = sys.argv[1:4]
    with open(path, "rb") as f:
        data = f.read()
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except Exception as error:  # the test shows the parser's own words
        print(f"parse error: {error}", file=sys.stderr)
        return 1
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    finish = datetime.fromisoformat(end.replace("Z", "+00:00"))
    for event in recurring_ical_events.of(calendar).between(begin, finish):
        recurrence_id = event.get("RECURRENCE-ID")
        attendees = event.get("ATTENDEE") or []
        if not isinstance(attendees, list):
            attendees = [attendees]
        print(json.dumps({
            "uid": str(event.get("UID")),
            "start": utc(event.decoded("DTSTART")),
            "end": utc(event.decoded("DTEND")),
            "status": str(event.get("STATUS", "")),
            "recurrence_id": utc(recurrence_id.dt) if recurrence_id else None,
            "partstat": {str(a): str(a.params.get("PARTSTAT", "")) for a in attendees},
            "summary": str(event.get("SUMMARY", "")),
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
