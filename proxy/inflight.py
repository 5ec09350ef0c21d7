"""Which records the next `proxy data` carries, and under which session: the in-flight rule shared by
the proxy's uplink and the site forwarder.

A batch that an earlier run handed to the server without seeing its reply (its session and id range
are in the buffer's `proxy_inflight`, committed by `ProxyBuffer.sending` before it left) may have been
stored there. So after a restart it goes first, under its old session and ids, and the server drops
what it already has by (proxy, session, id); only records never sent go under the new run's session.
The caller commits `buffer.sending(session, records)` for what it actually sends, before sending it.
"""

from __future__ import annotations

import dataclasses
import logging

from vigil.agent.protocol.proxy import MAX_RECORDS, HistoryRecord
from vigil.proxy.buffer import ProxyBuffer

log = logging.getLogger("vigil.proxy.inflight")


@dataclasses.dataclass(frozen=True)
class Pending:
    session: str
    records: list[HistoryRecord]  # ids increasing
    more: bool  # another batch should follow at once
    resend: bool  # the in-flight batch of an earlier run


def next_records(buffer: ProxyBuffer, session: str, limit: int = MAX_RECORDS) -> Pending:
    """The in-flight batch of an earlier session if any of it is unsent, else the oldest unsent records."""
    inflight = buffer.inflight()
    if inflight is not None and inflight[0] != session:
        old, lo, hi = inflight
        records = buffer.batch_range(lo, hi)
        if records:
            log.info("resending %d records of session %s that the server may have stored (ids %d..%d)",
                     len(records), old, records[0].id, records[-1].id)
            return Pending(old, records, True, True)
        buffer.clear_inflight()
    records = buffer.batch(limit)
    return Pending(session, records, len(records) >= limit, False)
