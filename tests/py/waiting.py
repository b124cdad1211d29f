"""What the slixmpp test scripts share: waiting for a condition, bounded in time."""

import asyncio
import time

TIMEOUT = 30


async def until(pred, what, timeout=TIMEOUT, poll=0.02):
    """Returns once pred() holds; fails after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        await asyncio.sleep(poll)
    raise AssertionError(f'timed out waiting for {what}')
