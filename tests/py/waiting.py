"""What the slixmpp test scripts share: waiting for a condition, bounded in
time, the error condition of an iq, and running a script's main(port, domain) with its exit status."""

import argparse
import asyncio
import sys
import time

TIMEOUT = 30


async def until(pred, what, timeout=TIMEOUT, poll=0.02):
    """Returns once pred() holds; fails after `timeout` seconds, saying
    `what` (or what `what()` returns then)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        await asyncio.sleep(poll)
    if callable(what):
        what = what()
    raise AssertionError(f'timed out waiting for {what}')


async def condition(coro):
    """The error condition an iq request gets (None when it succeeds)."""
    from slixmpp.exceptions import IqError
    try:
        await coro
        return None
    except IqError as e:
        return e.iq['error']['condition']


def run(main, **options):
    """Runs `main(port, domain, **options)` from --port, --domain and one
    --NAME per option (its value the default); exits 1, saying why on
    stderr, when it raises."""
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--domain', required=True)
    for name, default in options.items():
        ap.add_argument(f'--{name}', default=default)
    a = ap.parse_args()
    extra = {name: getattr(a, name) for name in options}
    try:
        asyncio.get_event_loop().run_until_complete(main(a.port, a.domain, **extra))
    except Exception as e:  # noqa: BLE001 - the test prints why
        print(f'FAILED: {e!r}', file=sys.stderr)
        sys.exit(1)
